//! The deployment examples stay true: the Kubernetes manifest parses, keeps every upload on one
//! shared volume until it is offloaded, probes the admin port's health endpoints and carries a
//! config that compiles; the systemd units use the readiness protocol (and the proxy's reloads
//! with `spillway reload`); the Dockerfile builds in one stage and runs as a non-root user in
//! another.

use std::path::Path;

use serde_yaml::Value;
use spillway::config::{self, Environment};
use spillway::s3::sigv4::Keys;

fn read(path: &Path) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn example(name: &str) -> String {
    read(&Path::new("examples").join(name))
}

fn no_var(_: &str) -> Option<String> {
    None
}

fn chain(_region: &str) -> Result<Keys, String> {
    Ok(Keys::new(
        "AKIDIRSA",
        "irsa-secret",
        None,
        None,
        "test chain",
    ))
}

const UPLOADS: &str = "/var/www/uploads";

/// The manifest's documents, in order.
fn manifest() -> Vec<Value> {
    let text = example("kubernetes.yaml");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn containers(pod: &Value) -> &Vec<Value> {
    pod["containers"].as_sequence().unwrap()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    containers(pod)
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn port<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{}: no port {name}", container["name"].as_str().unwrap()))
}

fn probes_the_admin_port(container: &Value) {
    let name = container["name"].as_str().unwrap();
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{name} {probe}");
        assert_eq!(
            container[probe]["httpGet"]["port"], "admin",
            "{name} {probe}"
        );
    }
    assert_eq!(port(container, "admin")["containerPort"], 9901, "{name}");
}

/// The volume a container mounts at `path`, from its pod's volumes.
fn volume_at<'a>(pod: &'a Value, container: &Value, path: &str) -> Option<&'a Value> {
    let mount = container["volumeMounts"]
        .as_sequence()?
        .iter()
        .find(|m| m["mountPath"] == path)?;
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume {:?}", mount["name"]));
    Some(volume)
}

#[test]
fn the_kubernetes_manifest_keeps_uploads_on_one_shared_volume() {
    let docs = manifest();
    let claim = find(&docs, "PersistentVolumeClaim", "spillway-uploads");
    let modes = claim["spec"]["accessModes"].as_sequence().unwrap();
    assert!(
        modes.iter().any(|m| m == "ReadWriteMany"),
        "every replica mounts it: {modes:?}"
    );

    let proxy = &find(&docs, "Deployment", "spillway")["spec"]["template"]["spec"];
    let offload = &find(&docs, "Deployment", "spillway-offload")["spec"]["template"]["spec"];
    // The app writes uploads, the proxy serves them, the offloader moves them: all from the
    // claim, never from a pod's own emptyDir (which a rolling update deletes).
    for (pod, name) in [(proxy, "legacy"), (proxy, "spillway"), (offload, "offload")] {
        assert!(
            volume_at(pod, container(pod, name), UPLOADS).is_some(),
            "{name} mounts {UPLOADS}"
        );
    }
    for pod in [proxy, offload] {
        for c in containers(pod) {
            let Some(volume) = volume_at(pod, c, UPLOADS) else {
                continue;
            };
            let name = c["name"].as_str().unwrap();
            assert!(
                volume["emptyDir"].is_null(),
                "{name}: uploads on an emptyDir"
            );
            assert_eq!(
                volume["persistentVolumeClaim"]["claimName"], "spillway-uploads",
                "{name}"
            );
        }
    }
    assert!(
        !containers(proxy).iter().any(|c| c["name"] == "offload"),
        "the offloader is its own Deployment, not a sidecar"
    );
}

#[test]
fn the_kubernetes_manifest_probes_the_admin_port_and_its_config_compiles() {
    let docs = manifest();
    let account = find(&docs, "ServiceAccount", "spillway");
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::")
    );

    // The proxy: replicas behind the Service, probed on the admin port, with a preStop so the
    // endpoints controller removes the pod before SIGTERM closes its listeners.
    let deployment = find(&docs, "Deployment", "spillway");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() > 1);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "spillway");
    let spillway = container(pod, "spillway");
    assert_eq!(
        spillway["image"].as_str().unwrap(),
        concat!("spillway:", env!("CARGO_PKG_VERSION")),
        "the image the Dockerfile builds"
    );
    assert_eq!(spillway["args"][0], "run");
    probes_the_admin_port(spillway);
    let pre_stop = &spillway["lifecycle"]["preStop"];
    assert!(pre_stop.is_mapping(), "spillway has a preStop");
    let pre_stop_seconds: u64 = if pre_stop["sleep"].is_mapping() {
        pre_stop["sleep"]["seconds"].as_u64().unwrap()
    } else {
        assert_eq!(pre_stop["exec"]["command"][0], "sleep");
        pre_stop["exec"]["command"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(pre_stop_seconds > 0);
    assert_eq!(
        find(&docs, "Service", "spillway")["spec"]["selector"]["app"],
        "spillway"
    );

    // The offloader: its own Deployment, watching, probed on the admin port it serves.
    let offload_deployment = find(&docs, "Deployment", "spillway-offload");
    assert!(offload_deployment["spec"]["replicas"].as_u64().unwrap() >= 1);
    assert_eq!(
        offload_deployment["spec"]["strategy"]["type"],
        "RollingUpdate"
    );
    let offload_pod = &offload_deployment["spec"]["template"]["spec"];
    assert_eq!(offload_pod["serviceAccountName"], "spillway");
    let offload = container(offload_pod, "offload");
    assert_eq!(offload["image"], spillway["image"]);
    let args: Vec<&str> = offload["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "offload");
    assert!(args.contains(&"--watch"), "{args:?}");
    probes_the_admin_port(offload);
    // Files in flight finish after SIGTERM: the pod is given time for them.
    assert!(
        offload_pod["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap()
            >= 60
    );

    // Non-root, read-only, no privileges, in every container of both Deployments.
    for pod in [pod, offload_pod] {
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 10001);
        assert_eq!(pod["securityContext"]["fsGroup"], 10001);
        for c in containers(pod) {
            let name = c["name"].as_str().unwrap();
            let security = &c["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert!(
                security["capabilities"]["drop"]
                    .as_sequence()
                    .is_some_and(|drop| drop.iter().any(|c| c == "ALL")),
                "{name} drops ALL capabilities"
            );
        }
    }

    // The ConfigMap's proxy.yaml compiles (its root made to exist here).
    let yaml = find(&docs, "ConfigMap", "spillway-config")["data"]["proxy.yaml"]
        .as_str()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("uploads")).unwrap();
    let yaml = yaml.replace(UPLOADS, &dir.path().join("uploads").display().to_string());
    let env = Environment {
        var: &no_var,
        chain: &chain,
    };
    let compiled = config::parse(&yaml, dir.path(), &env).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(compiled.admin, Some("0.0.0.0:9901".parse().unwrap()));
    let (_, uploads) = compiled.site.routes.iter().next().unwrap();
    assert!(
        uploads.bucket.as_ref().unwrap().credentials().from_chain(),
        "IRSA, no keys"
    );
    // The preStop, then the shutdown grace period and timeout, all before the SIGKILL.
    let needed = pre_stop_seconds
        + compiled.shutdown.grace_period.as_secs()
        + compiled.shutdown.timeout.as_secs();
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace >= needed,
        "terminationGracePeriodSeconds {grace} < {needed}"
    );
}

#[test]
fn the_systemd_unit_uses_readiness_and_reload() {
    let unit = example("spillway.service");
    for line in [
        "Type=notify",
        "NotifyAccess=all",
        "ExecReload=/usr/local/bin/spillway reload --config /etc/spillway/proxy.yaml",
        "ExecStart=/usr/local/bin/spillway run --config /etc/spillway/proxy.yaml",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
}

#[test]
fn the_offload_unit_watches_with_readiness_and_a_watchdog() {
    let unit = example("spillway-offload.service");
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "RestartPreventExitStatus=3",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
    assert!(
        unit.lines().any(|l| l.starts_with("WatchdogSec=")),
        "WatchdogSec"
    );
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.starts_with("ExecStart=/usr/local/bin/spillway offload --watch "),
        "{exec}"
    );
    assert!(exec.contains("--config /etc/spillway/proxy.yaml"), "{exec}");
    // The proxy's unit listens on the config's `admin:` address: this one takes another.
    assert!(exec.contains("--admin "), "{exec}");
}

fn is_from(line: &str) -> bool {
    line.to_ascii_uppercase().starts_with("FROM ")
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_unprivileged_in_another() {
    let dockerfile = read(Path::new("Dockerfile"));
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        lines
            .iter()
            .filter(|l| is_from(l))
            .any(|l| l.to_ascii_uppercase().ends_with(" AS BUILD")),
        "a FROM ... AS build stage"
    );
    assert!(dockerfile.contains("cargo build --release"));
    // Cargo reads the manifest's [[bench]] targets even to build the binary.
    if read(Path::new("Cargo.toml")).contains("[[bench]]") {
        assert!(lines.iter().any(|l| l.starts_with("COPY benches")));
    }

    let last_from = lines.iter().rposition(|l| is_from(l)).unwrap();
    let last = &lines[last_from..];
    assert!(
        !last[0].to_ascii_uppercase().contains(" AS BUILD"),
        "the final stage is not the build stage"
    );
    assert!(last
        .iter()
        .any(|l| l.starts_with("COPY --from=build ") && l.ends_with(" /usr/local/bin/spillway")));
    let user = last
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the final stage sets USER");
    let user = user.split(':').next().unwrap().trim();
    assert!(user != "root" && user != "0", "USER {user}");
    assert!(lines.contains(&r#"ENTRYPOINT ["/usr/local/bin/spillway"]"#));
}

/// Both units are hardened as `systemd-analyze security` measures it (4 or lower is "OK"),
/// and parse as units (`systemd-analyze verify`, with the binary's path standing in).
#[test]
fn the_units_are_hardened_to_an_exposure_of_4_or_less() {
    for name in ["spillway.service", "spillway-offload.service"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name);
        let out = std::process::Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(&path)
            .output()
            .expect("systemd-analyze (Debian's systemd package; .ci/run installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split_once(": ")
            })
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {name}:\n{text}"));
        assert!(score <= 4.0, "{name}: exposure {score}\n{text}");
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join(name);
        std::fs::write(
            &unit,
            read(&path).replace("/usr/local/bin/spillway", "/bin/true"),
        )
        .unwrap();
        let verify = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }
}
