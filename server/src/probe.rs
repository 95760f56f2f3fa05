//! Temporary timing probe.
use std::io::Write as _;
use std::sync::Mutex;
static OUT: Mutex<Option<std::fs::File>> = Mutex::new(None);
pub fn mark(label: &str, id: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
    let mut out = OUT.lock().unwrap();
    if out.is_none() {
        *out = Some(std::fs::OpenOptions::new().create(true).append(true).open("/tmp/probe.log").unwrap());
    }
    let _ = writeln!(out.as_mut().unwrap(), "{now} {label} {id}");
}
