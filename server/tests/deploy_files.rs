//! The deployment files, checked without Docker: docker-compose.yml, both Dockerfiles, the ComfyUI
//! launch script, .env.example, .dockerignore and the model manifest, for the properties that
//! docs/deployment.md promises (GPU, isolation of ComfyUI, start order, non-root users, pinned versions),
//! for what docs/security.md reasons about Docker's proxy and the health check, and for agreement with
//! the gateway's own defaults and workflow template.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed setup step must fail the test loudly"
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use clap::Parser as _;
use yaml_rust2::{Yaml, YamlLoader};
use zimage::access::Access;
use zimage::access::network::{AddressAllowlist, Cidr, DEFAULT_ALLOW};
use zimage::config::{AccessConfig, Cli, Command};
use zimage::models::{Folder, Manifest, ModelFile, Role, Source};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn compose() -> Yaml {
    YamlLoader::load_from_str(&read("docker-compose.yml"))
        .unwrap()
        .remove(0)
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let service = &compose["services"][name];
    assert!(
        !service.is_badvalue(),
        "no service `{name}` in docker-compose.yml"
    );
    service
}

fn str_of(yaml: &Yaml) -> String {
    match yaml {
        Yaml::String(text) => text.clone(),
        Yaml::Integer(number) => number.to_string(),
        Yaml::Boolean(flag) => flag.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn strings(yaml: &Yaml) -> Vec<String> {
    yaml.as_vec()
        .map(|items| items.iter().map(str_of).collect())
        .unwrap_or_default()
}

/// `${VAR:-default}` → `default`, `${VAR}` → empty: the values compose uses without a `.env`.
fn with_defaults(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed ${") + start;
        let inner = &rest[start + 2..end];
        if let Some((_, default)) = inner.split_once(":-") {
            out.push_str(default);
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Every `${VAR...}` in `text`, with its default (`None` for `${VAR}`).
fn variables(text: &str) -> BTreeMap<String, Option<String>> {
    let mut found = BTreeMap::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').unwrap() + start;
        let inner = &rest[start + 2..end];
        match inner.split_once(":-") {
            Some((name, default)) => found.insert(name.to_owned(), Some(default.to_owned())),
            None => found.insert(inner.to_owned(), None),
        };
        rest = &rest[end + 1..];
    }
    found
}

/// The environment of a service as a map (mapping or `KEY=value` list form), defaults applied.
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    match &service["environment"] {
        Yaml::Hash(map) => map
            .iter()
            .map(|(key, value)| (str_of(key), with_defaults(&str_of(value))))
            .collect(),
        Yaml::Array(items) => items
            .iter()
            .map(|item| {
                let text = str_of(item);
                let (key, value) = text.split_once('=').unwrap();
                (key.to_owned(), with_defaults(value))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `source:target[:mode]` volume entries, defaults applied.
fn volumes(service: &Yaml) -> Vec<(String, String)> {
    strings(&service["volumes"])
        .iter()
        .map(|entry| {
            let entry = with_defaults(entry);
            let mut parts = entry.split(':');
            (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
        })
        .collect()
}

/// A published port: (host address, host port, container port).
fn ports(service: &Yaml) -> Vec<(String, String, String)> {
    strings(&service["ports"])
        .iter()
        .map(|entry| {
            let entry = with_defaults(entry);
            let parts: Vec<&str> = entry.split(':').collect();
            assert_eq!(parts.len(), 3, "publish `{entry}` with an explicit host address");
            (parts[0].to_owned(), parts[1].to_owned(), parts[2].to_owned())
        })
        .collect()
}

fn networks(service: &Yaml) -> Vec<String> {
    match &service["networks"] {
        Yaml::Array(_) => strings(&service["networks"]),
        Yaml::Hash(map) => map.keys().map(str_of).collect(),
        _ => vec!["default".to_owned()],
    }
}

fn duration_seconds(text: &str) -> u64 {
    let text = text.trim();
    if let Some(minutes) = text.strip_suffix('m') {
        minutes.parse::<u64>().unwrap() * 60
    } else {
        text.trim_end_matches('s').parse().unwrap()
    }
}

/// A Dockerfile as instructions `(KEYWORD, arguments)` grouped in stages (a new one at each FROM),
/// with continuation lines joined and comments dropped as Docker's parser does.
fn dockerfile_stages(relative: &str) -> Vec<Vec<(String, String)>> {
    let text = read(relative);
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(continued) => {
                current.push_str(continued);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, arguments) = current.split_once(char::is_whitespace).unwrap_or((&current, ""));
                instructions.push((keyword.to_ascii_uppercase(), arguments.trim().to_owned()));
                current.clear();
            }
        }
    }
    let mut stages: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for instruction in instructions {
        if instruction.0 == "FROM" {
            stages.push(Vec::new());
        }
        stages.last_mut().unwrap().push(instruction);
    }
    stages
}

fn instructions<'a>(stage: &'a [(String, String)], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|(name, _)| name == keyword)
        .map(|(_, arguments)| arguments.as_str())
        .collect()
}

fn serve_defaults() -> zimage::config::ServeConfig {
    match Cli::try_parse_from(["zimage", "serve"]).unwrap().command {
        Command::Serve(config) => config,
        other => panic!("{other:?}"),
    }
}

fn shipped_manifest() -> Manifest {
    Manifest::load(&repo_root().join("backend/models.toml")).unwrap()
}

/// The repository a set's file comes from.
fn repo_of(file: &ModelFile) -> &str {
    match &file.source {
        Source::Hub { repo, .. } => repo,
        Source::Url { url, .. } => panic!("{} comes from {url}, not from the hub", file.id),
    }
}

// ---- docker-compose.yml -------------------------------------------------------------------------------

#[test]
fn comfyui_gets_one_nvidia_gpu() {
    let compose = compose();
    let devices = &service(&compose, "comfyui")["deploy"]["resources"]["reservations"]["devices"];
    let device = &devices[0];
    assert_eq!(str_of(&device["driver"]), "nvidia");
    assert_eq!(str_of(&device["count"]), "1");
    assert!(strings(&device["capabilities"]).contains(&"gpu".to_owned()));
}

#[test]
fn a_second_gpu_is_a_comfyui_pinned_to_its_card_behind_a_profile_and_never_published() {
    let compose = compose();
    let second = service(&compose, "comfyui-gpu1");
    assert_eq!(strings(&second["profiles"]), ["gpu1"]);
    let device = &second["deploy"]["resources"]["reservations"]["devices"][0];
    assert_eq!(str_of(&device["driver"]), "nvidia");
    assert_eq!(strings(&device["device_ids"]).len(), 1);
    assert!(device["count"].is_badvalue(), "pinned by device id, not by count");
    assert!(second["ports"].is_badvalue(), "a ComfyUI never publishes a port");
    assert_eq!(networks(second), networks(service(&compose, "comfyui")));
    // The gateway's backends are a setting, one ComfyUI by default.
    let backends = environment(service(&compose, "gateway"))["COMFYUI_URL"].clone();
    assert_eq!(backends, "http://comfyui:8188");
}

#[test]
fn comfyui_publishes_no_port_and_sits_on_internal_networks_only() {
    let compose = compose();
    let comfyui = service(&compose, "comfyui");
    assert!(comfyui["ports"].is_badvalue(), "ComfyUI must not publish a port");
    assert!(
        comfyui["network_mode"].is_badvalue(),
        "no host networking for ComfyUI"
    );
    for network in networks(comfyui) {
        assert_eq!(
            compose["networks"][network.as_str()]["internal"].as_bool(),
            Some(true),
            "ComfyUI's network `{network}` must be internal"
        );
    }
}

#[test]
fn no_service_publishes_a_port_on_a_public_address_except_the_gateway() {
    let compose = compose();
    for (name, definition) in compose["services"].as_hash().unwrap() {
        let name = str_of(name);
        for (address, host_port, container_port) in ports(definition) {
            if name == "gateway" {
                continue;
            }
            assert_eq!(
                address, "127.0.0.1",
                "{name} publishes {host_port}:{container_port} beyond loopback"
            );
        }
    }
    // The debugging port is only there when asked for, through a profile.
    let debug = service(&compose, "comfyui-debug");
    assert_eq!(strings(&debug["profiles"]), ["debug"]);
    assert_eq!(
        ports(debug),
        [("127.0.0.1".to_owned(), "8188".to_owned(), "8188".to_owned())]
    );
}

#[test]
fn the_gateway_publishes_the_studio_and_keeps_running() {
    let compose = compose();
    let gateway = service(&compose, "gateway");
    assert_eq!(
        ports(gateway),
        [("0.0.0.0".to_owned(), "7860".to_owned(), "7860".to_owned())]
    );
    assert_eq!(str_of(&gateway["restart"]), "unless-stopped");
    // Docker waits this long after SIGTERM before SIGKILL: more than the gateway's own bounded stop
    // (3 s for open connections, then 3 s for a save under way).
    let grace = str_of(&gateway["stop_grace_period"]);
    let seconds: u64 = grace.trim_end_matches('s').parse().unwrap();
    assert!(seconds >= 10, "stop_grace_period {grace}");
    assert_eq!(
        str_of(&gateway["depends_on"]["comfyui"]["condition"]),
        "service_healthy"
    );
    assert!(volumes(gateway).iter().any(|(_, target)| target == "/data"));
    // It reaches ComfyUI on the internal network and the LAN on another.
    let gateway_networks = networks(gateway);
    assert!(
        gateway_networks
            .iter()
            .any(|network| networks(service(&compose, "comfyui")).contains(network))
    );
    assert!(
        gateway_networks
            .iter()
            .any(|network| compose["networks"][network.as_str()]["internal"].as_bool() != Some(true))
    );
}

#[test]
fn docker_never_relays_outside_clients_from_an_address_the_default_allowlist_admits() {
    // Docker's userland proxy connects to the gateway from the gateway address of the network the port
    // is published on; it relays IPv6 clients of a port published on IPv6 (the network has no IPv6),
    // and every client when Docker's iptables rules are off. So that address must be refused, and the
    // port is published on IPv4 only, where Docker's NAT keeps each client's own address.
    let compose = compose();
    let gateway = service(&compose, "gateway");
    for (address, _, _) in ports(gateway) {
        assert!(
            address.parse::<Ipv4Addr>().is_ok(),
            "the studio is published on `{address}`: only an IPv4 address keeps Docker's proxy out of the way"
        );
    }
    let allow: AddressAllowlist = environment(gateway)["ZIMAGE_ALLOW"].parse().unwrap();
    assert_eq!(
        allow.to_string(),
        DEFAULT_ALLOW,
        "compose admits what the gateway admits by default"
    );
    let published_on: Vec<String> = networks(gateway)
        .into_iter()
        .filter(|network| compose["networks"][network.as_str()]["internal"].as_bool() != Some(true))
        .collect();
    assert!(!published_on.is_empty());
    for network in published_on {
        let definition = &compose["networks"][network.as_str()];
        assert_ne!(
            definition["enable_ipv6"].as_bool(),
            Some(true),
            "{network}: with IPv6 on the network, revisit the proxy reasoning"
        );
        let subnet = &definition["ipam"]["config"][0]["subnet"];
        assert!(
            !subnet.is_badvalue(),
            "the network `{network}` needs a fixed subnet, or its gateway address is anyone's guess"
        );
        let subnet: Cidr = with_defaults(&str_of(subnet)).parse().unwrap();
        let IpAddr::V4(first) = subnet.network() else {
            panic!("{network}: an IPv4 subnet")
        };
        let size = 1u32 << (32 - u32::from(subnet.prefix()));
        assert!(
            size <= 1 << 16,
            "{network}: {subnet} is larger than it needs to be"
        );
        for offset in 0..size {
            let address = IpAddr::V4(Ipv4Addr::from(u32::from(first) + offset));
            assert!(
                !allow.admits(address),
                "{address} on `{network}` (Docker's proxy connects from its gateway) is admitted by {allow}"
            );
        }
    }
}

#[test]
fn comfyui_waits_for_the_models_and_reports_its_health() {
    let compose = compose();
    let comfyui = service(&compose, "comfyui");
    assert_eq!(
        str_of(&comfyui["depends_on"]["models"]["condition"]),
        "service_completed_successfully"
    );
    let healthcheck = &comfyui["healthcheck"];
    assert!(strings(&healthcheck["test"]).join(" ").contains("/system_stats"));
    assert!(
        duration_seconds(&str_of(&healthcheck["start_period"])) >= 120,
        "ComfyUI's first start is slow"
    );
    assert_eq!(str_of(&comfyui["restart"]), "unless-stopped");
}

#[test]
fn the_models_service_fetches_once_into_the_volume_comfyui_reads() {
    let compose = compose();
    let models = service(&compose, "models");
    assert_eq!(strings(&models["command"]), ["models", "fetch"]);
    assert_eq!(str_of(&models["restart"]), "no");
    let environment = environment(models);
    let models_dir = &environment["ZIMAGE_MODELS_DIR"];
    let source = volumes(models)
        .into_iter()
        .find(|(_, target)| target == models_dir)
        .map(|(source, _)| source);
    let comfyui_source = volumes(service(&compose, "comfyui"))
        .into_iter()
        .find(|(_, target)| target == "/opt/comfyui/models")
        .map(|(source, _)| source);
    assert!(
        source.is_some() && source == comfyui_source,
        "{source:?} vs {comfyui_source:?}"
    );
    assert_eq!(environment["ZIMAGE_MODEL_SET"], "default");
    assert!(shipped_manifest().set(&environment["ZIMAGE_MODEL_SET"]).is_ok());
}

#[test]
fn the_gateway_environment_sets_every_serve_option_to_what_the_stack_needs() {
    let compose = compose();
    let environment = environment(service(&compose, "gateway"));
    for key in [
        "ZIMAGE_LISTEN",
        "COMFYUI_URL",
        "ZIMAGE_DATA_DIR",
        "ZIMAGE_WORKFLOW",
        "ZIMAGE_UNET",
        "ZIMAGE_TEXT_ENCODER",
        "ZIMAGE_VAE",
    ] {
        assert!(environment.contains_key(key), "gateway environment lacks {key}");
    }
    let comfyui = url::Url::parse(&environment["COMFYUI_URL"]).unwrap();
    assert_eq!(
        comfyui.host_str(),
        Some("comfyui"),
        "ComfyUI is reached by its service name"
    );
    assert_eq!(comfyui.port(), Some(8188));
    assert!(environment["ZIMAGE_LISTEN"].ends_with(":7860"));
    assert_eq!(
        environment["ZIMAGE_WORKFLOW"],
        "/app/backend/workflows/z_image_turbo.json"
    );

    // Out of the box, the gateway asks for exactly the files of the default model set, with the same
    // names as its own defaults.
    let defaults = serve_defaults();
    let manifest = shipped_manifest();
    let set = manifest.set("default").unwrap();
    let expected = [
        ("ZIMAGE_UNET", defaults.workflow.unet.as_str(), Role::Unet),
        (
            "ZIMAGE_TEXT_ENCODER",
            defaults.workflow.text_encoder.as_str(),
            Role::TextEncoder,
        ),
        ("ZIMAGE_VAE", defaults.workflow.vae.as_str(), Role::Vae),
    ];
    for (key, default, role) in expected {
        assert_eq!(environment[key], default, "{key}");
        assert_eq!(set.file_for(role).unwrap().name(), default, "{key}");
        assert_eq!(role.env_var(), key);
    }
}

#[test]
fn every_compose_variable_is_in_env_example_with_the_same_default() {
    let compose_text = read("docker-compose.yml");
    let example: BTreeMap<String, String> = read(".env.example")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    for (name, default) in variables(&compose_text) {
        let documented = example
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is not in .env.example"));
        assert_eq!(
            Some(documented),
            default.as_ref(),
            "{name}: .env.example and docker-compose.yml disagree"
        );
    }
}

#[test]
fn both_images_are_built_for_the_desktop_user() {
    let compose = compose();
    for name in ["comfyui", "gateway", "models"] {
        let args = &service(&compose, name)["build"]["args"];
        assert_eq!(with_defaults(&str_of(&args["UID"])), "1000", "{name}");
        assert_eq!(with_defaults(&str_of(&args["GID"])), "1000", "{name}");
    }
}

// ---- Dockerfiles --------------------------------------------------------------------------------------

/// The final stage runs as a non-root user given by the UID/GID build arguments (1000 by default).
fn assert_runs_as_build_arg_user(relative: &str) {
    let stages = dockerfile_stages(relative);
    let last = stages.last().unwrap();
    let args = instructions(last, "ARG");
    assert!(
        args.contains(&"UID=1000") && args.contains(&"GID=1000"),
        "{relative}: {args:?}"
    );
    let user = *instructions(last, "USER")
        .last()
        .unwrap_or_else(|| panic!("{relative} sets no USER"));
    assert_eq!(user, "${UID}:${GID}", "{relative}");
    // Nothing after USER switches back to root.
    let after_user = last.iter().skip_while(|(keyword, _)| keyword != "USER").skip(1);
    assert!(after_user.clone().all(|(keyword, _)| keyword != "USER"));
}

#[test]
fn both_images_run_as_a_non_root_user() {
    assert_runs_as_build_arg_user("backend/Dockerfile");
    assert_runs_as_build_arg_user("Dockerfile");
}

#[test]
fn the_comfyui_image_pins_the_verified_commits_and_checks_them() {
    let stages = dockerfile_stages("backend/Dockerfile");
    let all: Vec<(String, String)> = stages.concat();
    let args = instructions(&all, "ARG");
    assert!(
        args.contains(&"COMFYUI_COMMIT=3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce"),
        "{args:?}"
    );
    assert!(
        args.contains(&"COMFYUI_GGUF_COMMIT=795e45156ece99afbc3efef911e63fcb46e6a20d"),
        "{args:?}"
    );
    let runs = instructions(&all, "RUN").join("\n");
    assert!(runs.contains("rev-parse HEAD"), "the fetched commit is checked");
    assert!(!runs.contains("ComfyUI-Manager.git"), "no ComfyUI-Manager");
    let base = args
        .iter()
        .find_map(|arg| arg.strip_prefix("CUDA_IMAGE="))
        .unwrap();
    assert!(base.starts_with("nvidia/cuda:12."), "{base}");
}

#[test]
fn torch_has_a_layer_of_its_own_before_any_comfyui_file() {
    let stages = dockerfile_stages("backend/Dockerfile");
    let last = stages.last().unwrap();
    let position = |predicate: &dyn Fn(&(String, String)) -> bool| last.iter().position(predicate).unwrap();
    let torch = position(&|(keyword, arguments)| keyword == "RUN" && arguments.contains("torch=="));
    let first_comfyui_copy =
        position(&|(keyword, arguments)| keyword == "COPY" && arguments.contains("/src/comfyui"));
    let requirements =
        position(&|(keyword, arguments)| keyword == "RUN" && arguments.contains("comfyui.txt"));
    assert!(torch < first_comfyui_copy && first_comfyui_copy < requirements);
    let torch_run = &last[torch].1;
    assert!(
        !torch_run.contains("comfyui"),
        "the torch layer installs torch only"
    );
    let requirements_run = &last[requirements].1;
    assert!(
        requirements_run.contains("--constraint"),
        "ComfyUI's requirements cannot replace the CUDA torch"
    );
}

#[test]
fn the_comfyui_image_checks_its_health_on_system_stats() {
    let stages = dockerfile_stages("backend/Dockerfile");
    let healthcheck = instructions(stages.last().unwrap(), "HEALTHCHECK").join(" ");
    assert!(healthcheck.contains("/system_stats"), "{healthcheck}");
    let start_period = healthcheck
        .split_whitespace()
        .find_map(|word| word.strip_prefix("--start-period="))
        .unwrap();
    assert!(duration_seconds(start_period) >= 120, "{start_period}");
}

#[test]
fn comfyui_starts_with_flags_for_a_12_gb_card() {
    let script = read("backend/entrypoint.sh");
    let command: String = script
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(command.contains("main.py"));
    assert!(command.contains("--listen 0.0.0.0"));
    assert!(command.contains("--cache-lru"));
    for forbidden in [
        "--fp16-vae",
        "--enable-cors-header",
        "--cpu",
        "--enable-manager",
        "--highvram",
    ] {
        assert!(!command.contains(forbidden), "{forbidden} must not be set");
    }
    let stages = dockerfile_stages("backend/Dockerfile");
    let entrypoint = instructions(stages.last().unwrap(), "ENTRYPOINT").join(" ");
    assert!(entrypoint.contains("entrypoint.sh"), "{entrypoint}");
}

#[test]
fn the_gateway_image_checks_its_health_from_loopback_which_the_door_admits_whatever_the_allowlist() {
    let stages = dockerfile_stages("Dockerfile");
    let last = stages.last().unwrap();
    let healthcheck = instructions(last, "HEALTHCHECK").join(" ");
    let url = healthcheck
        .split(|character: char| character.is_whitespace() || character == '"' || character == ',')
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {healthcheck}"));
    let url = url::Url::parse(url).unwrap();
    assert_eq!(url.path(), "/healthz", "{url}");
    let environment = instructions(last, "ENV").join(" ");
    assert!(
        environment.contains(&format!("ZIMAGE_LISTEN=0.0.0.0:{}", url.port().unwrap())),
        "the health check asks the port the studio listens on: {environment}"
    );
    let host: IpAddr = url.host_str().unwrap().parse().unwrap();
    // As narrow as .env.example suggests: the health check must still get past the door.
    let config = AccessConfig {
        allow: "192.168.1.0/24".parse().unwrap(),
        ..AccessConfig::default()
    };
    let door = Access::with_keys(&config, "0.0.0.0:7860".parse().unwrap(), None);
    assert!(!door.admits_address(host));
    assert!(door.admits_health_probe(host), "{host}");
    let authority = format!("{host}:{}", url.port().unwrap());
    assert!(door.admits_host(Some(authority.as_str())));
}

#[test]
fn the_gateway_image_builds_server_and_bundle_and_runs_on_a_small_base() {
    let stages = dockerfile_stages("Dockerfile");
    let from: Vec<&str> = stages
        .iter()
        .flat_map(|stage| instructions(stage, "FROM"))
        .collect();
    assert!(from.len() >= 2, "multi-stage: {from:?}");
    let all: Vec<(String, String)> = stages.concat();
    let runs = instructions(&all, "RUN").join("\n");
    assert!(runs.contains("trunk build --release"));
    assert!(runs.contains("cargo build --release --locked -p server"));
    let last = stages.last().unwrap();
    let base = instructions(last, "FROM")[0];
    assert!(base.contains("-slim") || base.contains("distroless"), "{base}");
    let copies = instructions(last, "COPY").join("\n");
    assert!(
        copies.contains("backend/workflows"),
        "the workflow template is inside"
    );
    assert!(copies.contains("/site"), "the web UI bundle is inside");
    assert!(
        copies.contains("backend/models.toml"),
        "the manifest is inside, for `zimage models fetch`"
    );
    assert!(instructions(last, "EXPOSE").contains(&"7860"));
    let environment = instructions(last, "ENV").join(" ");
    assert!(environment.contains("ZIMAGE_MODELS_DIR=/models"));
    assert!(environment.contains("ZIMAGE_WORKFLOW=/app/backend/workflows/z_image_turbo.json"));
}

#[test]
fn the_docker_build_context_leaves_out_outputs_and_data() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for entry in ["target", ".git", "models", "data", ".env"] {
        assert!(
            ignored.iter().any(|line| line == entry),
            "{entry} is not in .dockerignore"
        );
    }
}

// ---- The model manifest -------------------------------------------------------------------------------

#[test]
fn the_shipped_manifest_has_the_default_and_light_sets() {
    let manifest = shipped_manifest();
    assert_eq!(manifest.set_names().collect::<Vec<_>>(), ["default", "light"]);
    let light = manifest.set("light").unwrap();
    assert_eq!(
        light.file_for(Role::Unet).unwrap().name(),
        "z_image_turbo-Q5_K_M.gguf"
    );
    let default = manifest.set("default").unwrap();
    assert_eq!(
        default.file_for(Role::Unet).unwrap().name(),
        "z_image_turbo-Q8_0.gguf"
    );
    assert_eq!(
        repo_of(default.file_for(Role::Unet).unwrap()),
        "jayn7/Z-Image-Turbo-GGUF"
    );
    assert_eq!(
        repo_of(default.file_for(Role::TextEncoder).unwrap()),
        "unsloth/Qwen3-4B-GGUF"
    );
    assert_eq!(
        repo_of(default.file_for(Role::Vae).unwrap()),
        "Comfy-Org/z_image_turbo"
    );
}

#[test]
fn every_manifest_file_goes_to_the_folder_of_its_loader() {
    for file in shipped_manifest().files() {
        let folder = match file.role {
            Some(Role::Unet) => Folder::DiffusionModels,
            Some(Role::TextEncoder) => Folder::TextEncoders,
            Some(Role::Vae) => Folder::Vae,
            None => panic!("{} of [files] has no role", file.id),
        };
        assert_eq!(file.folder, folder, "{}", file.id);
    }
}

#[test]
fn a_pinned_manifest_entry_also_pins_size_and_sha256() {
    // A fixed commit has fixed bytes: whoever pins it writes down what they are. Entries that follow a
    // branch get their hash from the hub at download time instead.
    for file in shipped_manifest().files() {
        if file.is_pinned() {
            assert!(
                file.sha256.is_some() && file.size.is_some(),
                "{} is pinned without size and sha256",
                file.id
            );
        } else {
            assert!(
                file.size_hint().is_some(),
                "{} needs at least an approx_size for the disk check",
                file.id
            );
        }
    }
}

#[test]
fn the_workflow_template_names_the_files_of_the_default_set() {
    let template: serde_json::Value =
        serde_json::from_str(&read("backend/workflows/z_image_turbo.json")).unwrap();
    let input = |class: &str, name: &str| {
        template
            .as_object()
            .unwrap()
            .values()
            .find(|node| node["class_type"] == class)
            .and_then(|node| node["inputs"][name].as_str())
            .unwrap_or_else(|| panic!("{class}.{name}"))
            .to_owned()
    };
    let manifest = shipped_manifest();
    let set = manifest.set("default").unwrap();
    assert_eq!(
        input("UnetLoaderGGUF", "unet_name"),
        set.file_for(Role::Unet).unwrap().name()
    );
    assert_eq!(
        input("CLIPLoaderGGUF", "clip_name"),
        set.file_for(Role::TextEncoder).unwrap().name()
    );
    assert_eq!(
        input("VAELoader", "vae_name"),
        set.file_for(Role::Vae).unwrap().name()
    );
}

#[test]
fn the_env_example_names_the_files_of_the_model_set_it_chooses() {
    let example: BTreeMap<String, String> = read(".env.example")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let manifest = shipped_manifest();
    let set = manifest.set(&example["ZIMAGE_MODEL_SET"]).unwrap();
    for role in Role::ALL {
        assert_eq!(example[role.env_var()], set.file_for(role).unwrap().name());
    }
}
