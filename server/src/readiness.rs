//! Readiness: whether ComfyUI can run the studio's workflow now, as `/readyz` and the page read it
//! without ever waiting on ComfyUI.
//!
//! Ready means both: the socket's [`Link`] is up (ComfyUI answers, and jobs submitted now get their
//! events), and a probe made on that connection found every node class and model file the workflow
//! needs. The probe runs once per connection, because a restarted or replaced ComfyUI always shows as
//! a new connection; while ready, the socket's ping/pong (and the LoRA list, below) is the only
//! traffic. While the probe finds something missing (or fails), it is repeated until the answer is
//! ready.
//!
//! The prober also learns the backend's LoRA files (`LoraLoaderModelOnly`'s list) with each probe, and
//! asks again every [`ProbeTuning::lora_refresh`] while connected, so a file dropped into (or removed
//! from) `models/loras` is known without a restart. The list is published before the readiness that
//! follows it, and the last one known stays while the backend is away.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use zimage_contract::{BackendState, BackendStatus, BackendView, Readiness};

use crate::comfy::Link;
use crate::comfy::client::{ComfyClient, Probe};
use crate::comfy::workflow::Workflow;

/// How often ComfyUI is probed while connected but not ready.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTuning {
    /// Between probes that found something missing or failed: soon after the missing model file
    /// appears, the studio should say it is ready.
    pub while_waiting: Duration,
    /// Between two readings of the LoRA list while connected: one small request each.
    pub lora_refresh: Duration,
}

/// The LoRA files a backend listed last (sorted); `None` before it ever answered.
pub type LoraListing = Option<Vec<String>>;

/// The trigger words of the LoRA files the backends list, by file name (read once per backend and
/// file; shared by every prober and `GET /api/loras`). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TriggerWords(Arc<std::sync::RwLock<std::collections::BTreeMap<String, Vec<String>>>>);

impl TriggerWords {
    /// The words of `name`, if any backend's file has some.
    pub fn get(&self, name: &str) -> Vec<String> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    fn learn(&self, name: &str, words: Vec<String>) {
        let mut known = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // One backend's file without words does not hide another's that has some.
        if !words.is_empty() || !known.contains_key(name) {
            known.insert(name.to_owned(), words);
        }
    }
}

impl Default for ProbeTuning {
    fn default() -> ProbeTuning {
        ProbeTuning {
            while_waiting: Duration::from_secs(2),
            lora_refresh: Duration::from_secs(30),
        }
    }
}

/// Starts following `link` and probing each new connection; the receivers always hold the latest
/// answer and LoRA list. The task ends when the link's sender (the socket task) or every receiver is gone.
pub fn spawn(
    comfy: ComfyClient,
    workflow: Arc<Workflow>,
    link: watch::Receiver<Link>,
    comfy_url: String,
    demo: bool,
    tuning: ProbeTuning,
    triggers: TriggerWords,
) -> (
    watch::Receiver<Readiness>,
    watch::Receiver<LoraListing>,
    tokio::task::JoinHandle<()>,
) {
    let initial = unreachable(&comfy_url, demo, "not checked yet");
    let (sender, receiver) = watch::channel(initial);
    let (loras, loras_receiver) = watch::channel(None);
    let prober = Prober {
        comfy,
        workflow,
        comfy_url,
        demo,
        tuning,
        sender,
        loras,
        triggers,
        read_triggers: std::sync::Mutex::new(std::collections::BTreeSet::new()),
    };
    (receiver, loras_receiver, tokio::spawn(prober.run(link)))
}

struct Prober {
    comfy: ComfyClient,
    workflow: Arc<Workflow>,
    comfy_url: String,
    demo: bool,
    tuning: ProbeTuning,
    sender: watch::Sender<Readiness>,
    loras: watch::Sender<LoraListing>,
    triggers: TriggerWords,
    /// The files whose trigger words this backend has told already.
    read_triggers: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Prober {
    async fn run(self, mut link: watch::Receiver<Link>) {
        loop {
            let current = link.borrow_and_update().clone();
            let followed = match current {
                Link::Down { reason } => {
                    self.publish(unreachable(&self.comfy_url, self.demo, &reason));
                    link.changed().await.is_ok()
                }
                // Until the probe answers, the previous answer (down, or not yet checked) stands.
                Link::Up { .. } => self.probe_until_ready(&mut link).await,
            };
            if !followed || self.sender.is_closed() {
                return;
            }
        }
    }

    /// Probes the live connection until the answer is ready, then waits; returns when the link
    /// changes (true) or its sender is gone (false). A change cuts a probe short: a lost connection
    /// turns readiness down at once, not after the probe's timeout.
    async fn probe_until_ready(&self, link: &mut watch::Receiver<Link>) -> bool {
        loop {
            let readiness = tokio::select! {
                changed = link.changed() => return changed.is_ok(),
                probed = self.probe() => match probed {
                    Ok(probe) => from_probe(probe, &self.comfy_url, self.demo),
                    Err(error) => unreachable(
                        &self.comfy_url,
                        self.demo,
                        &format!("its WebSocket is connected but {error}"),
                    ),
                },
            };
            let ready = readiness.ready;
            self.publish(readiness);
            if ready {
                return self.refresh_loras(link).await;
            }
            tokio::select! {
                changed = link.changed() => return changed.is_ok(),
                () = tokio::time::sleep(self.tuning.while_waiting) => {}
            }
        }
    }

    /// The probe, and the LoRA list read on the same connection (published first).
    async fn probe(&self) -> Result<Probe, crate::comfy::Error> {
        let probe = self.comfy.probe(&self.workflow).await?;
        let names = self.comfy.loras().await?;
        self.read_trigger_words(&names).await;
        self.publish_loras(names);
        Ok(probe)
    }

    /// While ready: reads the LoRA list every [`ProbeTuning::lora_refresh`] until the link changes
    /// (true) or its sender is gone (false). A failed reading keeps the list known.
    async fn refresh_loras(&self, link: &mut watch::Receiver<Link>) -> bool {
        loop {
            tokio::select! {
                changed = link.changed() => return changed.is_ok(),
                () = tokio::time::sleep(self.tuning.lora_refresh) => {}
            }
            tokio::select! {
                changed = link.changed() => return changed.is_ok(),
                listed = self.comfy.loras() => match listed {
                    Ok(names) => {
                        self.read_trigger_words(&names).await;
                        self.publish_loras(names);
                    }
                    Err(error) => tracing::debug!(%error, "cannot read the LoRA list now"),
                },
            }
        }
    }

    /// Reads the trigger words of the files not read yet (one small request each, once); a file
    /// whose answer fails is tried again at the next reading.
    async fn read_trigger_words(&self, names: &[String]) {
        let unread: Vec<String> = {
            let read = self
                .read_triggers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            names
                .iter()
                .filter(|name| !read.contains(*name))
                .cloned()
                .collect()
        };
        for name in unread {
            match self.comfy.lora_trigger_words(&name).await {
                Ok(words) => {
                    self.triggers.learn(&name, words);
                    self.read_triggers
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(name);
                }
                Err(error) => {
                    tracing::debug!(%error, lora = %name, "cannot read the LoRA's trigger words now")
                }
            }
        }
    }

    fn publish_loras(&self, names: Vec<String>) {
        self.loras.send_if_modified(|known| {
            if known.as_ref() == Some(&names) {
                return false;
            }
            tracing::info!(loras = ?names, "the backend's LoRA files");
            *known = Some(names);
            true
        });
    }

    fn publish(&self, readiness: Readiness) {
        let changed = {
            let current = self.sender.borrow();
            current.state != readiness.state || current.message != readiness.message
        };
        if changed {
            tracing::info!(state = ?readiness.state, message = %readiness.message, "backend readiness changed");
        }
        self.sender.send_replace(readiness);
    }
}

/// One backend as people see it, from its readiness and what the engine knows of it.
pub fn backend_view(
    name: &str,
    readiness: &Readiness,
    busy: bool,
    jobs_done: u64,
    median: Option<Duration>,
) -> BackendView {
    let (state, reason) = match readiness.state {
        BackendState::Ready if busy => (BackendStatus::Busy, None),
        BackendState::Ready => (BackendStatus::Ready, None),
        BackendState::Starting => (BackendStatus::NotReady, Some(readiness.message.clone())),
        BackendState::Unreachable => (BackendStatus::Down, Some(readiness.message.clone())),
    };
    BackendView {
        name: name.to_owned(),
        state,
        reason,
        device: readiness.device.clone(),
        jobs_done,
        median_seconds_per_image: median.map(|median| (median.as_secs_f64() * 10.0).round() / 10.0),
        // Filled once the gateway learns each backend's LoRAs.
        loras: Vec::new(),
    }
}

/// The studio's readiness over all its backends: ready while at least one is. With one backend it is
/// that backend's answer; with several, the message counts the ready ones and says what is wrong with
/// each of the others, by name.
pub fn combine(each: &[(String, Readiness)]) -> Readiness {
    if let [(_, only)] = each {
        return only.clone();
    }
    let ready: Vec<&(String, Readiness)> = each.iter().filter(|(_, readiness)| readiness.ready).collect();
    let state = if !ready.is_empty() {
        BackendState::Ready
    } else if each
        .iter()
        .any(|(_, readiness)| readiness.state == BackendState::Starting)
    {
        BackendState::Starting
    } else {
        BackendState::Unreachable
    };
    let mut message = format!("{} of {} GPUs ready.", ready.len(), each.len());
    let mut missing_nodes: Vec<String> = Vec::new();
    let mut missing_models: Vec<String> = Vec::new();
    for (name, readiness) in each {
        if !readiness.ready {
            message.push_str(&format!(" {name}: {}", readiness.message));
            missing_nodes.extend(readiness.missing_nodes.iter().cloned());
            missing_models.extend(readiness.missing_models.iter().cloned());
        }
    }
    for list in [&mut missing_nodes, &mut missing_models] {
        list.sort();
        list.dedup();
    }
    Readiness {
        ready: !ready.is_empty(),
        state,
        demo: each.iter().any(|(_, readiness)| readiness.demo),
        message,
        missing_nodes,
        missing_models,
        device: ready.first().and_then(|(_, readiness)| readiness.device.clone()),
        warnings: Vec::new(),
        checked_at: each
            .iter()
            .map(|(_, readiness)| readiness.checked_at)
            .max()
            .unwrap_or(0),
        backends: Vec::new(),
    }
}

/// Keeps `combined` up to date with every backend's readiness until all their senders are gone.
pub async fn follow(mut each: Vec<(String, watch::Receiver<Readiness>)>, combined: watch::Sender<Readiness>) {
    loop {
        let current: Vec<(String, Readiness)> = each
            .iter_mut()
            .map(|(name, readiness)| (name.clone(), readiness.borrow_and_update().clone()))
            .collect();
        combined.send_replace(combine(&current));
        let changes = each
            .iter_mut()
            .map(|(_, readiness)| Box::pin(readiness.changed()));
        let (changed, _, _) = futures_util::future::select_all(changes).await;
        if changed.is_err() {
            return;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn unreachable(comfy_url: &str, demo: bool, reason: &str) -> Readiness {
    Readiness {
        ready: false,
        state: BackendState::Unreachable,
        demo,
        message: format!("Waiting for ComfyUI at {comfy_url} ({reason})."),
        missing_nodes: Vec::new(),
        missing_models: Vec::new(),
        device: None,
        warnings: Vec::new(),
        checked_at: now_ms(),
        backends: Vec::new(),
    }
}

/// Turns a probe into the answer people read.
pub fn from_probe(probe: Probe, comfy_url: &str, demo: bool) -> Readiness {
    let mut problems = Vec::new();
    if !probe.missing_nodes.is_empty() {
        problems.push(format!(
            "ComfyUI lacks the node types {} (is the ComfyUI-GGUF node pack installed?)",
            probe.missing_nodes.join(", ")
        ));
    }
    if !probe.missing_models.is_empty() {
        problems.push(format!(
            "model files not installed: {} (run `zimage models fetch`)",
            probe.missing_models.join(", ")
        ));
    }
    problems.extend(probe.other_problems.iter().cloned());
    let ready = problems.is_empty();
    let message = if !ready {
        problems.join("; ")
    } else if demo {
        "Demo mode: a built-in ComfyUI simulator makes test patterns instead of images.".to_owned()
    } else {
        match &probe.device {
            Some(device) => format!("Ready on {}.", device.name),
            None => format!("Ready: ComfyUI at {comfy_url}."),
        }
    };
    Readiness {
        ready,
        state: if ready {
            BackendState::Ready
        } else {
            BackendState::Starting
        },
        demo,
        message,
        missing_nodes: probe.missing_nodes,
        missing_models: probe.missing_models,
        device: probe.device,
        // Written by `/readyz` in the language of each request (running on the CPU, the disk).
        warnings: Vec::new(),
        checked_at: now_ms(),
        backends: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use comfy_sim::{SimHandle, SimOptions, Simulator};
    use url::Url;

    use super::*;
    use crate::comfy::workflow::fixtures::{committed_workflow, default_models};

    /// Generous: these tests wait for answers, never for a fixed time.
    const PATIENCE: Duration = Duration::from_secs(20);

    struct Setup {
        sim: SimHandle,
        link: watch::Sender<Link>,
        readiness: watch::Receiver<Readiness>,
        loras: watch::Receiver<LoraListing>,
        _task: tokio::task::JoinHandle<()>,
    }

    async fn setup(options: SimOptions) -> Setup {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = Simulator::spawn(listener, options).await.unwrap();
        let comfy = ComfyClient::new(Url::parse(&sim.url()).unwrap());
        let (link, link_receiver) = watch::channel(Link::Down {
            reason: "no connection yet".to_owned(),
        });
        let tuning = ProbeTuning {
            while_waiting: Duration::from_millis(20),
            lora_refresh: Duration::from_millis(20),
        };
        let workflow = Arc::new(committed_workflow(default_models()));
        let (readiness, loras, task) = spawn(
            comfy,
            workflow,
            link_receiver,
            sim.url(),
            false,
            tuning,
            TriggerWords::default(),
        );
        Setup {
            sim,
            link,
            readiness,
            loras,
            _task: task,
        }
    }

    fn up(client_id: &str) -> Link {
        Link::Up {
            client_id: client_id.to_owned(),
        }
    }

    async fn until(
        readiness: &mut watch::Receiver<Readiness>,
        accept: impl Fn(&Readiness) -> bool,
    ) -> Readiness {
        tokio::time::timeout(PATIENCE, readiness.wait_for(accept))
            .await
            .expect("readiness in time")
            .expect("the prober runs")
            .clone()
    }

    #[tokio::test]
    async fn the_lora_list_is_learned_with_the_probe_refreshed_while_connected_and_kept_while_away() {
        let mut setup = setup(SimOptions {
            loras: vec!["ink.safetensors".to_owned(), "a/b.safetensors".to_owned()],
            ..SimOptions::default()
        })
        .await;
        assert_eq!(*setup.loras.borrow(), None);
        setup.link.send_replace(up("one"));
        until(&mut setup.readiness, |readiness| readiness.ready).await;
        // Published before the readiness it came with.
        assert_eq!(
            *setup.loras.borrow(),
            Some(vec!["a/b.safetensors".to_owned(), "ink.safetensors".to_owned()])
        );
        // A file dropped in and one taken out: learned while ready, no new connection.
        setup
            .sim
            .set_loras(vec!["new.safetensors".to_owned(), "ink.safetensors".to_owned()]);
        let wanted = Some(vec!["ink.safetensors".to_owned(), "new.safetensors".to_owned()]);
        tokio::time::timeout(PATIENCE, setup.loras.wait_for(|loras| *loras == wanted))
            .await
            .expect("the new list in time")
            .expect("the prober runs");
        // Away: the last list known stays.
        setup.link.send_replace(Link::Down {
            reason: "gone".to_owned(),
        });
        until(&mut setup.readiness, |readiness| !readiness.ready).await;
        assert_eq!(*setup.loras.borrow(), wanted);
    }

    #[tokio::test]
    async fn down_says_why_and_up_is_ready_once_the_probe_passes() {
        let mut setup = setup(SimOptions::default()).await;
        let down = until(&mut setup.readiness, |readiness| {
            readiness.message.contains("no connection yet")
        })
        .await;
        assert_eq!(down.state, BackendState::Unreachable);
        assert!(!down.ready);
        assert_eq!(setup.sim.faults().requests_to("GET /"), 0, "no probe while down");

        setup.link.send_replace(up("a"));
        let ready = until(&mut setup.readiness, |readiness| readiness.ready).await;
        assert_eq!(ready.state, BackendState::Ready);
        assert!(ready.device.is_some());

        setup.link.send_replace(Link::Down {
            reason: "its WebSocket was lost: no frame and no pong for 5s".to_owned(),
        });
        let lost = until(&mut setup.readiness, |readiness| !readiness.ready).await;
        assert_eq!(lost.state, BackendState::Unreachable);
        assert!(lost.message.contains("no frame and no pong"), "{}", lost.message);
    }

    #[tokio::test]
    async fn a_connection_is_probed_once_and_a_new_one_again() {
        let mut setup = setup(SimOptions::default()).await;
        setup.link.send_replace(up("a"));
        until(&mut setup.readiness, |readiness| readiness.ready).await;
        let faults = setup.sim.faults();
        // The probe's lookups; the LoRA list's readings every `lora_refresh` are counted apart.
        let probes = || {
            faults.requests_to("GET /object_info/")
                - faults.requests_to("GET /object_info/LoraLoaderModelOnly")
        };
        let classes = probes();
        assert!(classes > 0);
        assert_eq!(faults.requests_to("GET /system_stats"), 1);

        // Many probe periods of a not-ready prober: a ready one stays quiet but for its LoRA list.
        let lora_readings = faults.requests_to("GET /object_info/LoraLoaderModelOnly");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(faults.requests_to("GET /system_stats"), 1);
        assert_eq!(probes(), classes);
        assert!(faults.requests_to("GET /object_info/LoraLoaderModelOnly") > lora_readings);

        // A new connection (a restarted ComfyUI shows as one) is probed again.
        setup.link.send_replace(Link::Down {
            reason: "closed".to_owned(),
        });
        setup.link.send_replace(up("b"));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while probes() < 2 * classes {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no probe of the new connection"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        until(&mut setup.readiness, |readiness| readiness.ready).await;
        assert_eq!(faults.requests_to("GET /system_stats"), 2);
    }

    #[tokio::test]
    async fn a_probe_that_finds_something_missing_is_repeated() {
        let mut setup = setup(SimOptions {
            vaes: vec!["other.safetensors".to_owned()],
            ..SimOptions::default()
        })
        .await;
        setup.link.send_replace(up("a"));
        let missing = until(&mut setup.readiness, |readiness| {
            readiness.state == BackendState::Starting
        })
        .await;
        assert_eq!(missing.missing_models, ["ae.safetensors"]);
        assert!(missing.message.contains("ae.safetensors"), "{}", missing.message);
        // It keeps asking while something is missing.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while setup.sim.faults().requests_to("GET /system_stats") < 3 {
            assert!(tokio::time::Instant::now() < deadline, "not probed again");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_link_lost_during_a_hung_probe_turns_readiness_down_at_once() {
        let mut setup = setup(SimOptions::default()).await;
        // ComfyUI freezes just as the connection comes up: the probe hangs (for its 10 s timeout).
        setup.sim.faults().stall(true);
        setup.link.send_replace(up("a"));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while setup.sim.faults().open_connections() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the probe never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        setup.link.send_replace(Link::Down {
            reason: "its WebSocket was lost: no frame and no pong for 5s".to_owned(),
        });
        // Well within the probe's 10 s timeout.
        let lost = tokio::time::timeout(
            Duration::from_secs(5),
            setup
                .readiness
                .wait_for(|readiness| readiness.message.contains("no pong")),
        )
        .await
        .expect("readiness turned at once")
        .unwrap()
        .clone();
        assert!(!lost.ready);
        setup.sim.faults().stall(false);
    }
}
