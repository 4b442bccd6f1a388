//! `spillway check --probe`: what offload will meet at each bucket it uploads to, found out by
//! doing it once with a small probe object: credentials, write access, whether the store takes
//! the checksum headers, proof of what it stored, and deletion of the probe.

use std::collections::HashSet;

use crate::config::Config;
use crate::offload::digest::Sums;
use crate::offload::store::Store;
use crate::offload::transfer::{self, S3Error, Target};
use crate::offload::verify::{self, Evidence, Local};

const PROBE: &[u8] = b"spillway check --probe: this object is deleted at once\n";

/// One bucket's result: a line to print, and whether offload would work there.
pub struct Probed {
    pub line: String,
    pub ok: bool,
}

/// Probes every bucket that a route with an `offload:` block uploads to, each once.
pub fn probe(config: &Config) -> std::io::Result<Vec<Probed>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut seen = HashSet::new();
    let mut results = Vec::new();
    for (_, route) in config.site.routes.iter() {
        let (Some(_), Some(name), Some(bucket)) =
            (&route.offload, &route.bucket_name, &route.bucket)
        else {
            continue;
        };
        if !seen.insert(name.clone()) {
            continue;
        }
        let key = format!("{}.spillway-probe-{}", route.key_prefix, std::process::id());
        results.push(runtime.block_on(async {
            match Store::connect(name, bucket).await {
                Ok(store) => probe_one(name, &store, &key).await,
                Err(e) => Probed {
                    line: format!("warning    bucket {name}: offload cannot upload: {e}"),
                    ok: false,
                },
            }
        }));
    }
    Ok(results)
}

async fn probe_one(name: &str, store: &Store, key: &str) -> Probed {
    let target = Target {
        store,
        key,
        content_type: "text/plain; charset=utf-8",
        cache_control: None,
        limiter: None,
    };
    let warn = |what: String| Probed {
        line: format!("warning    bucket {name} ({}): {what}", store.endpoint),
        ok: false,
    };
    let mut headers = "the checksum headers accepted";
    let put = match transfer::put_bytes(&target, PROBE.to_vec()).await {
        Err(S3Error::ChecksumsRefused { .. }) => {
            store.fall_back_to_md5();
            headers = "x-amz-checksum-* headers refused: offload sends Content-MD5 alone there, and proves uploads by the ETag";
            transfer::put_bytes(&target, PROBE.to_vec()).await
        }
        other => other,
    };
    let local = Local::single(&Sums::of(PROBE));
    let evidence = match put {
        Ok(stored) => verify::compare(&stored, &local),
        // A probe left by a run that died before deleting it: look at it instead.
        Err(S3Error::Appeared { .. }) => Evidence::Unknown(String::new()),
        Err(e) => return warn(format!("offload cannot upload: {e}")),
    };
    let evidence = match evidence {
        Evidence::Same => Evidence::Same,
        _ => match transfer::stored(&target).await {
            Ok(Some(stored)) => verify::compare(&stored, &local),
            Ok(None) => Evidence::Unknown("the object is not there after the upload".to_owned()),
            Err(e) => return warn(format!("offload cannot read back what it uploads: {e}")),
        },
    };
    let deleted = transfer::withdraw(&target).await;
    match (evidence, deleted) {
        (Evidence::Same, Ok(())) => Probed {
            line: format!(
                "probe      bucket {name} ({}): uploaded, verified and deleted s3://{}/{key}; {headers}",
                store.endpoint, store.bucket
            ),
            ok: true,
        },
        (Evidence::Same, Err(e)) => warn(format!(
            "uploads verify, but the probe could not be deleted ({e}): remove s3://{}/{key} by hand",
            store.bucket
        )),
        (Evidence::Different(why) | Evidence::Unknown(why), _) => warn(format!(
            "offload cannot prove what the store keeps ({why}), so it would keep every file"
        )),
    }
}
