//! What may run on the event loop, measured: `cargo bench --bench disk`.
//!
//! spillway resolves paths with `openat2(RESOLVE_CACHED)` and reads with
//! `preadv2(RWF_NOWAIT)` on the worker thread, and only moves work to Tokio's blocking pool when
//! the kernel says it would wait for the disk. These benchmarks show why:
//! - a cached open + fstat and a page-cache read cost about as much as the hand-off to the
//!   blocking pool, so offloading everything would double the cost of a hit;
//! - a cold read costs far more (it waits for the device), while the NOWAIT attempt that
//!   detects it returns at once.

use std::fs::File;
use std::hint::black_box;
use std::io::IoSliceMut;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use rustix::fs::{fadvise, Advice};
use rustix::io::ReadWriteFlags;
use spillway::fs::docroot::Docroot;
use spillway::fs::open_cache::CacheSettings;

const CHUNK: usize = 128 * 1024;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data: Vec<u8> = (0..64 * CHUNK).map(|i| i as u8).collect();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::write(dir.path().join("a/b/file.bin"), &data).unwrap();
    let uncached = CacheSettings {
        entries: 0,
        ..CacheSettings::default()
    };
    let root = Docroot::open(dir.path(), true, uncached).unwrap();
    let remembering = Docroot::open(dir.path(), true, CacheSettings::default()).unwrap();
    let file = Arc::new(File::open(dir.path().join("a/b/file.bin")).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();

    c.bench_function("open/openat2 RESOLVE_CACHED + fstat (hit)", |b| {
        b.iter(|| root.lookup_cached(black_box("a/b/file.bin")).unwrap())
    });
    c.bench_function("open/open-file cache (hit)", |b| {
        b.iter(|| {
            remembering
                .lookup_cached(black_box("a/b/file.bin"))
                .unwrap()
        })
    });
    c.bench_function("open/spawn_blocking round trip (empty task)", |b| {
        b.iter(|| runtime.block_on(async { tokio::task::spawn_blocking(|| ()).await.unwrap() }))
    });
    c.bench_function("read/128KiB preadv2 NOWAIT (page cache)", |b| {
        let mut buf = vec![0u8; CHUNK];
        b.iter(|| {
            rustix::io::preadv2(
                &*file,
                &mut [IoSliceMut::new(&mut buf)],
                0,
                ReadWriteFlags::NOWAIT,
            )
            .unwrap()
        })
    });
    c.bench_function("read/128KiB pread via spawn_blocking (page cache)", |b| {
        b.iter(|| {
            let file = Arc::clone(&file);
            runtime.block_on(async move {
                tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; CHUNK];
                    file.read_at(&mut buf, 0).unwrap()
                })
                .await
                .unwrap()
            })
        })
    });

    // Cold: drop the file's pages from the page cache before every read (the data is clean,
    // so DONTNEED evicts it). `iter_batched` keeps the eviction out of the measurement.
    let evict = || fadvise(&*file, 0, None, Advice::DontNeed).unwrap();
    c.bench_function("read/128KiB preadv2 NOWAIT (evicted: EAGAIN)", |b| {
        let mut buf = vec![0u8; CHUNK];
        b.iter_batched(
            evict,
            |()| {
                rustix::io::preadv2(
                    &*file,
                    &mut [IoSliceMut::new(&mut buf)],
                    0,
                    ReadWriteFlags::NOWAIT,
                )
            },
            criterion::BatchSize::PerIteration,
        )
    });
    c.bench_function(
        "read/128KiB blocking pread (evicted: from the device)",
        |b| {
            let mut buf = vec![0u8; CHUNK];
            b.iter_batched(
                evict,
                |()| file.read_at(&mut buf, 0).unwrap(),
                criterion::BatchSize::PerIteration,
            )
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
