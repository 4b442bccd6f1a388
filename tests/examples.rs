//! The deployment examples under `examples/` stay true: the Kubernetes manifest parses, probes
//! the admin port's health endpoints and carries a config that compiles; the systemd unit uses
//! the readiness protocol and reloads with `spillway reload`.

use std::path::Path;

use spillway::config::{self, Environment};
use spillway::s3::sigv4::Keys;

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name),
    )
    .unwrap()
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

#[test]
fn the_kubernetes_manifest_probes_the_admin_port_and_its_config_compiles() {
    let text = example("kubernetes.yaml");
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let account = kind("ServiceAccount");
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::")
    );
    let deployment = kind("Deployment");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() > 1);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "spillway");
    let containers = pod["containers"].as_sequence().unwrap();
    let spillway = containers.iter().find(|c| c["name"] == "spillway").unwrap();
    assert_eq!(spillway["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(spillway["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(spillway["readinessProbe"]["httpGet"]["port"], "admin");
    let admin = spillway["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap();
    assert_eq!(admin["containerPort"], 9901);
    let offload = containers.iter().find(|c| c["name"] == "offload").unwrap();
    assert_eq!(offload["args"][0], "offload");
    assert_eq!(offload["args"][1], "--watch");
    assert_eq!(kind("Service")["spec"]["selector"]["app"], "spillway");

    // The ConfigMap's proxy.yaml compiles (its root made to exist here).
    let yaml = kind("ConfigMap")["data"]["proxy.yaml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("uploads")).unwrap();
    let yaml = yaml.replace(
        "/var/www/uploads",
        &dir.path().join("uploads").display().to_string(),
    );
    let env = Environment {
        var: &no_var,
        chain: &chain,
    };
    let compiled = config::parse(&yaml, dir.path(), &env).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(compiled.admin, Some("0.0.0.0:9901".parse().unwrap()));
    let (_, uploads) = compiled.routes.iter().next().unwrap();
    assert!(
        uploads.bucket.as_ref().unwrap().credentials().from_chain(),
        "IRSA, no keys"
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
