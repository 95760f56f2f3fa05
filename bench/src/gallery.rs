//! Measurement 9, a large gallery: a data folder of 100,000 images as older versions kept it (one JSON
//! record per image), then `zimage serve` on it: the first start (which imports the records into the
//! history database), later starts (spawn to `/healthz` 200) after a clean stop and after a kill, and
//! searches through the API. Beside
//! them, the JSON folder read as the previous history did at every start (every record read and
//! parsed), in process.
//!
//! Synchronous on purpose, like the start-up measurement.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use zimage::history::HistoryRecord;
use zimage::job_id::JobId;

use crate::gateway::{free_port, parse_status, serve_command};
use crate::stats::Summary;

/// How a large-gallery measurement runs.
pub(crate) struct GallerySpec<'a> {
    pub(crate) zimage: &'a Path,
    pub(crate) comfyui: &'a str,
    pub(crate) workflow: &'a Path,
    pub(crate) site_root: &'a Path,
    /// `taskset -c` CPU list for the gateway.
    pub(crate) cpus: Option<&'a str>,
    pub(crate) data_parent: Option<&'a Path>,
    pub(crate) records: usize,
    pub(crate) starts: usize,
    /// Requests per kind of search.
    pub(crate) searches: usize,
}

/// One kind of search and its latency through the API.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SearchTiming {
    pub(crate) kind: String,
    pub(crate) example: String,
    /// Items on the first page (24 at most).
    pub(crate) found: usize,
    pub(crate) latency: Summary,
}

/// The result of measurement 9.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GalleryReport {
    pub(crate) records: usize,
    /// The previous history's start: read and parse every JSON record (in process).
    pub(crate) json_folder_load: Summary,
    /// The first start on the JSON folder, importing it: spawn to `/healthz` 200.
    pub(crate) first_start_ms: f64,
    /// Later starts on the imported history after a clean stop (SIGTERM): spawn to `/healthz` 200.
    pub(crate) start: Summary,
    /// Starts after the previous run was killed (SIGKILL): the crash recovery checks every image.
    pub(crate) start_after_crash: Summary,
    pub(crate) searches: Vec<SearchTiming>,
}

const ENGLISH: &[&str] = &[
    "red",
    "fox",
    "snow",
    "lighthouse",
    "harbor",
    "dusk",
    "mountain",
    "lake",
    "portrait",
    "cinematic",
    "watercolor",
    "city",
    "night",
    "rain",
    "neon",
    "forest",
    "cat",
    "dog",
    "owl",
    "heron",
    "garden",
    "bridge",
    "river",
    "sunset",
    "golden",
    "light",
    "misty",
    "morning",
    "castle",
    "dragon",
    "tea",
    "market",
    "street",
    "old",
    "woman",
    "man",
    "child",
    "boat",
    "ocean",
    "storm",
];
const CHINESE: &[&str] = &[
    "一只在雪地里的红狐狸",
    "山间的小屋",
    "夜晚的城市",
    "水墨画风格",
    "古老的石桥",
    "樱花树下的猫",
    "雨中的街道",
    "金色的夕阳",
    "湖边的白鹭",
    "云雾缭绕的山峰",
];

/// A small deterministic generator (xorshift), so every run builds the same gallery.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

fn prompt(rng: &mut Rng) -> String {
    let mut words: Vec<&str> = (0..8 + rng.next() % 8).map(|_| rng.pick(ENGLISH)).collect();
    if rng.next().is_multiple_of(4) {
        words.insert(0, rng.pick(CHINESE));
    }
    words.join(" ")
}

/// A 1x1 PNG: start-up lists the images, never reads them.
fn tiny_png() -> anyhow::Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::new(1, 1).write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// Writes a data folder of `records` JSON records and their images, as older versions kept it.
fn build_folder(root: &Path, records: usize) -> anyhow::Result<Vec<u64>> {
    let (history, images) = (root.join("history"), root.join("images"));
    std::fs::create_dir_all(&history)?;
    std::fs::create_dir_all(&images)?;
    let png = tiny_png()?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seeds = Vec::with_capacity(records);
    for n in 0..records {
        let id = JobId::new();
        let seed = rng.next() >> 11;
        seeds.push(seed);
        let record = HistoryRecord {
            id,
            owner: None,
            prompt: prompt(&mut rng),
            seed,
            width: 1024,
            height: 1024,
            timings: zimage_contract::Timings {
                queued_at: 1_760_000_000_000 + n as u64,
                started_at: Some(1_760_000_000_100 + n as u64),
                finished_at: Some(1_760_000_003_100 + n as u64),
            },
            elapsed_ms: 3000,
            backend: n.is_multiple_of(2).then(|| "gpu-1".to_owned()),
            source: None,
            loras: Vec::new(),
        };
        std::fs::write(
            history.join(format!("{id}.json")),
            serde_json::to_vec_pretty(&record)?,
        )?;
        std::fs::write(images.join(format!("{id}.png")), &png)?;
    }
    Ok(seeds)
}

/// The previous history's start: every record read and parsed into an ordered map.
fn load_json_folder(dir: &Path) -> anyhow::Result<usize> {
    let mut records = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "json") {
            let record: HistoryRecord = serde_json::from_slice(&std::fs::read(&path)?)?;
            records.insert(record.id, record);
        }
    }
    Ok(records.len())
}

/// Runs measurement 9.
pub(crate) fn measure(spec: &GallerySpec<'_>) -> anyhow::Result<GalleryReport> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("zimage-bench-gallery");
    let folder = match spec.data_parent {
        Some(parent) => builder.tempdir_in(parent)?,
        None => builder.tempdir()?,
    };
    let root = folder.path();
    println!("   writing {} JSON records and images...", spec.records);
    let seeds = build_folder(root, spec.records)?;

    let mut json_loads = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let loaded = load_json_folder(&root.join("history"))?;
        json_loads.push(started.elapsed());
        anyhow::ensure!(
            loaded == spec.records,
            "loaded {loaded} of {} records",
            spec.records
        );
    }

    let first = Server::start(spec, root)?;
    let first_start_ms = first.started_in.as_secs_f64() * 1e3;
    first.stop()?;
    let mut starts = Vec::new();
    for _ in 0..spec.starts {
        let server = Server::start(spec, root)?;
        starts.push(server.started_in);
        server.stop()?;
    }
    // Each of these follows a kill, as after a power cut.
    drop(Server::start(spec, root)?);
    let mut starts_after_crash = Vec::new();
    for _ in 0..spec.starts {
        starts_after_crash.push(Server::start(spec, root)?.started_in);
    }

    let server = Server::start(spec, root)?;
    // Stars on one image in a hundred, through the API.
    let page = server.get("/api/history?limit=100")?;
    let page: serde_json::Value = serde_json::from_str(&page)?;
    for item in page["items"].as_array().context("no items")?.iter().step_by(2) {
        let id = item["id"].as_str().context("no id")?;
        server.request(
            "PATCH",
            &format!("/api/history/{id}"),
            Some(r#"{"starred":true}"#),
        )?;
    }
    let seed = seeds[seeds.len() / 2].to_string();
    let kinds: Vec<(&str, Vec<String>)> = vec![
        ("no search (the newest page)", vec![String::new()]),
        (
            "an English word (trigram index)",
            vec!["lighthouse".into(), "heron".into(), "watercolor".into()],
        ),
        ("two English words", vec!["red fox".into(), "misty harbor".into()]),
        (
            "Chinese, 3+ characters (trigram index)",
            vec!["红狐狸".into(), "水墨画".into(), "樱花树".into()],
        ),
        (
            "Chinese, 2 characters (the index's trigrams that begin with them)",
            vec!["狐狸".into(), "城市".into(), "白鹭".into()],
        ),
        (
            "2 characters in many prompts (read in the prompts, newest first)",
            vec!["in".into(), "or".into()],
        ),
        (
            "2 characters, no match (no trigram begins with them)",
            vec!["鲸鱼".into(), "qz".into()],
        ),
        (
            "1 character (read in the prompts, newest first)",
            vec!["猫".into(), "k".into()],
        ),
        ("3+ characters, no match", vec!["unicorn".into(), "zqxj".into()]),
        ("a seed", vec![seed]),
        ("starred only", vec!["*starred".into()]),
        ("a word, starred only", vec!["*starred fox".into()]),
    ];
    let mut searches = Vec::new();
    for (kind, examples) in kinds {
        let mut latencies = Vec::new();
        let mut found = 0;
        for n in 0..spec.searches {
            let text = &examples[n % examples.len()];
            let path = match text.strip_prefix("*starred") {
                Some(rest) => format!("/api/history?starred=true&q={}", encode(rest.trim())),
                None => format!("/api/history?q={}", encode(text)),
            };
            let started = Instant::now();
            let body = server.get(&path)?;
            latencies.push(started.elapsed());
            if n == 0 {
                let page: serde_json::Value = serde_json::from_str(&body)?;
                found = page["items"].as_array().map_or(0, Vec::len);
            }
        }
        let latency = Summary::of(&latencies).context("no search measured")?;
        println!(
            "   {kind}: p50 {:.2} ms, p90 {:.2} ms ({found} on the first page)",
            latency.median_ms, latency.p90_ms
        );
        searches.push(SearchTiming {
            kind: kind.to_owned(),
            example: examples[0].clone(),
            found,
            latency,
        });
    }
    Ok(GalleryReport {
        records: spec.records,
        json_folder_load: Summary::of(&json_loads).context("no load measured")?,
        first_start_ms,
        start: Summary::of(&starts).context("no start measured")?,
        start_after_crash: Summary::of(&starts_after_crash).context("no start measured")?,
        searches,
    })
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A `zimage serve` on the gallery's folder; killed when dropped (a crash), or [`Server::stop`]ped
/// as Docker stops it.
struct Server {
    child: Child,
    addr: SocketAddr,
    started_in: Duration,
}

impl Server {
    fn start(spec: &GallerySpec<'_>, data_dir: &Path) -> anyhow::Result<Server> {
        let addr = free_port()?;
        let mut command = serve_command(
            spec.zimage,
            spec.cpus,
            addr,
            spec.comfyui,
            data_dir,
            spec.workflow,
            spec.site_root,
        );
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = Instant::now();
        let child = command.spawn().context("cannot start the gateway")?;
        let mut server = Server {
            child,
            addr,
            started_in: Duration::ZERO,
        };
        loop {
            if server.status("/healthz") == Some(200) {
                server.started_in = started.elapsed();
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("the gateway exited with {status} before answering");
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("the gateway did not answer within 120 s");
            }
            std::thread::sleep(Duration::from_micros(250));
        }
    }

    /// Stops the gateway with SIGTERM and waits for it to exit (it closes the history cleanly).
    fn stop(mut self) -> anyhow::Result<()> {
        let terminated = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(terminated.success(), "kill -TERM failed");
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "the gateway exited with {status} after SIGTERM");
        Ok(())
    }

    fn status(&self, path: &str) -> Option<u16> {
        let mut socket = TcpStream::connect(self.addr).ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut head = [0_u8; 12];
        socket.write_all(request.as_bytes()).ok()?;
        socket.read_exact(&mut head).ok()?;
        parse_status(&head)
    }

    fn get(&self, path: &str) -> anyhow::Result<String> {
        self.request("GET", path, None)
    }

    /// One request on a new connection; the body of a 200.
    fn request(&self, method: &str, path: &str, json: Option<&str>) -> anyhow::Result<String> {
        let mut socket = TcpStream::connect(self.addr)?;
        let body = json.unwrap_or("");
        let origin = format!("http://{}", self.addr);
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        socket.write_all(request.as_bytes())?;
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
        anyhow::ensure!(
            parse_status(head.as_bytes()) == Some(200),
            "{method} {path}: {head}"
        );
        // The history answers with a length, not in chunks.
        Ok(body.to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_folder_loads_as_the_previous_history_did() {
        let root = tempfile::tempdir().unwrap();
        let seeds = build_folder(root.path(), 50).unwrap();
        assert_eq!(seeds.len(), 50);
        assert_eq!(load_json_folder(&root.path().join("history")).unwrap(), 50);
        assert_eq!(std::fs::read_dir(root.path().join("images")).unwrap().count(), 50);
        let imported = zimage::history::History::open_blocking(root.path()).unwrap();
        assert_eq!(imported.len(), 50);
    }
}
