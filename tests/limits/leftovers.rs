//! Temp files of an interrupted atomic write (`.routes.yaml.<pid>.<n>.tmp`, left by a
//! process killed between create and rename) are removed when the gateway starts; nothing
//! else in the directory is touched, not even a temp file of a writer still running.

use std::path::Path;
use std::process::Command;

use crate::ROUTES;
use crate::support::{Gateway, backends, render, restart};

/// The pid of a process that has exited (and been reaped): no process has it now.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
                meta.modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_removes_the_leftovers_of_interrupted_writes_and_nothing_else() {
    let b = backends(&["v1"]).await;
    let gateway = Gateway::start(&render(ROUTES, &b)).await;
    let dir = gateway.dir.path().to_owned();
    let (dead, other_dead) = (dead_pid(), dead_pid());
    let mut running = Command::new("sleep").arg("30").spawn().unwrap();
    let leftovers = [
        format!(".routes.yaml.{dead}.0.tmp"),
        format!(".routes.yaml.{dead}.7.tmp"),
        format!(".routes.yaml.{other_dead}.1.tmp"),
    ];
    for name in &leftovers {
        // What a kill -9 between write and rename leaves: half a routes file.
        std::fs::write(dir.join(name), &ROUTES[..40]).unwrap();
    }
    let bystanders = [
        format!(".routes.yaml.{}.0.tmp", running.id()), // a write in progress elsewhere
        format!(".other.yaml.{dead}.0.tmp"),            // another file's temp
        format!(".routes.yaml.{dead}.x.tmp"),           // not this scheme's shape
        format!("routes.yaml.{dead}.0.tmp"),            // not hidden: not ours
        ".routes.yaml.bak".to_owned(),
        "notes.txt".to_owned(),
    ];
    for name in &bystanders {
        std::fs::write(dir.join(name), format!("keep {name}")).unwrap();
    }
    let before: Vec<_> = snapshot(&dir).into_iter().filter(|(name, ..)| !leftovers.contains(name)).collect();

    let gateway = restart(gateway, |_| {}).await;

    let after = snapshot(&dir);
    assert_eq!(after, before, "only the leftovers went; every other file is byte for byte and mtime the same");
    assert_eq!(gateway.client.get("/hello").await.status, http::StatusCode::OK);
    running.kill().unwrap();
    running.wait().unwrap();
}
