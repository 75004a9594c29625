//! The `graygate` command: `serve`, `check`, `routes push|pull` and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use graygate::app::{App, StopSignal};
use graygate::config::{ServerConfig, SourceSettings};
use graygate::routes::ValidRoutes;
use graygate::store::remote::{self, Pushed, RemoteError};

#[derive(Parser)]
#[command(name = "graygate", version, about = "Gray-release API gateway for function versions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, default_value = "config/graygate.yaml")]
        config: PathBuf,
    },
    /// Validate the server config and its routing state, print a summary, exit 0 or 1.
    Check {
        #[arg(long, default_value = "config/graygate.yaml")]
        config: PathBuf,
    },
    /// Read or replace the stored routing state (the fleet's, in etcd; or the routes file).
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Start built-in demo backends and a gateway in front of them.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
        /// Check the split, print the result and exit instead of serving.
        #[arg(long)]
        self_test: bool,
    },
    /// Run one demo backend (answers with its name); for scripts and benchmarks.
    #[command(hide = true)]
    EchoBackend {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        name: String,
        /// Wait this long before answering (a slow function).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
}

#[derive(Subcommand)]
enum RoutesCommand {
    /// Validate FILE and store it as the routing state (atomically, whatever its size).
    Push {
        file: PathBuf,
        #[arg(long, default_value = "config/graygate.yaml")]
        config: PathBuf,
        /// Refuse if the stored state is no longer at this revision (as `pull` printed it).
        #[arg(long)]
        expect_revision: Option<u64>,
    },
    /// Print the stored routing state as a routes file.
    Pull {
        #[arg(long, default_value = "config/graygate.yaml")]
        config: PathBuf,
        /// yaml (default) or json.
        #[arg(long, default_value = "yaml")]
        format: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Routes { command } => routes(command),
        Command::Serve { config } => {
            let config = match ServerConfig::load(&config) {
                Ok(config) => config,
                Err(error) => return fail(&error.to_string()),
            };
            // stdout carries the access log then: the gateway's own log moves aside.
            let access_to_stdout =
                config.access_log.as_ref().is_some_and(|log| log.sink == graygate::access_log::Sink::Stdout);
            init_logging(access_to_stdout);
            run_async(async move {
                let stop = StopSignal::install();
                let app = App::start(config).await.map_err(|e| e.to_string())?;
                app.run_until(stop).await;
                Ok(())
            })
        }
        Command::EchoBackend { listen, name, delay_ms } => run_async(async move {
            let addr = graygate::demo::serve_backend(listen, &name, std::time::Duration::from_millis(delay_ms))
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            println!("{name} listening on {addr}");
            StopSignal::install().wait().await;
            Ok(())
        }),
        Command::Demo { listen, admin_listen, self_test } => {
            init_logging(false);
            run_async(graygate::demo::run(listen, admin_listen, self_test))
        }
    }
}

fn run_async(work: impl Future<Output = Result<(), String>>) -> ExitCode {
    // TOKIO_WORKER_THREADS sizes the worker pool (default: one per core). With one worker,
    // a current-thread runtime does the same work without cross-thread wake-ups.
    let workers = std::env::var("TOKIO_WORKER_THREADS").ok().and_then(|n| n.trim().parse::<usize>().ok());
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the runtime: {error}")),
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("graygate: {message}");
    ExitCode::FAILURE
}

/// graygate's own log: stdout, or stderr when the access log has stdout.
fn init_logging(to_stderr: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    if to_stderr {
        log.with_writer(std::io::stderr).init();
    } else {
        log.init();
    }
}

fn check(config_path: &std::path::Path) -> ExitCode {
    let config = match ServerConfig::load(config_path) {
        Ok(config) => config,
        Err(error) => return fail(&error.to_string()),
    };
    let (label, routes) = match &config.source {
        SourceSettings::File(path) => match ValidRoutes::load(path, &config.reload.limits) {
            Ok(routes) => (path.display().to_string(), routes),
            Err(error) => return rejected(&error.to_string(), error.problems.len()),
        },
        SourceSettings::Etcd(etcd) => {
            let pulled = match run_blocking(remote::pull(&config.source, &config.reload.limits)) {
                Ok(pulled) => pulled,
                Err(error) => return fail(&error),
            };
            match pulled {
                Ok((routes, revision)) => match ValidRoutes::new(routes) {
                    Ok(routes) => (format!("etcd {} at revision {}", etcd.prefix, revision.unwrap_or(0)), routes),
                    Err(issues) => {
                        let text: Vec<String> = issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect();
                        return rejected(&text.join("\n"), issues.len());
                    }
                },
                Err(RemoteError::Unavailable(why)) => {
                    println!("{}: ok (listen {}, admin {})", config_path.display(), config.listen, config.admin_listen);
                    println!("etcd {}: not reachable, the stored state was not checked ({why})", etcd.prefix);
                    return ExitCode::SUCCESS;
                }
                Err(RemoteError::NoState(why)) => {
                    println!("{}: ok (listen {}, admin {})", config_path.display(), config.listen, config.admin_listen);
                    println!("etcd {}: {why}; store one with `graygate routes push`", etcd.prefix);
                    return ExitCode::SUCCESS;
                }
                Err(RemoteError::Refused(why)) => return rejected(&why, 1),
            }
        }
    };
    println!("{}: ok (listen {}, admin {})", config_path.display(), config.listen, config.admin_listen);
    print!("{}", graygate::summary::render(&label, routes.spec()));
    ExitCode::SUCCESS
}

fn rejected(problems: &str, count: usize) -> ExitCode {
    eprintln!("{problems}");
    eprintln!("graygate: {count} problem(s); nothing was applied");
    ExitCode::FAILURE
}

fn routes(command: RoutesCommand) -> ExitCode {
    match command {
        RoutesCommand::Push { file, config, expect_revision } => {
            let config = match ServerConfig::load(&config) {
                Ok(config) => config,
                Err(error) => return fail(&error.to_string()),
            };
            let limits = &config.reload.limits;
            let name = graygate::routes::display_name(&file);
            let text = match graygate::routes::read_within(&file, limits) {
                Ok(bytes) => match graygate::routes::text_within(bytes, &name, limits) {
                    Ok(text) => text,
                    Err(error) => return rejected(&error.to_string(), 1),
                },
                Err(error) => return fail(&error.to_string()),
            };
            let routes = match ValidRoutes::parse_within(&text, &name, limits) {
                Ok(routes) => routes,
                Err(error) => return rejected(&error.to_string(), error.problems.len()),
            };
            match run_blocking(remote::push(
                &config.source,
                &routes,
                &text,
                expect_revision,
                limits,
                config.audit_log.retain,
            )) {
                Ok(Ok(Pushed::Unchanged { revision })) => {
                    println!("unchanged: the stored state already is {} (revision {revision})", file.display());
                    ExitCode::SUCCESS
                }
                Ok(Ok(Pushed::Stored { revision, functions })) => {
                    println!("stored {} ({functions} function(s)) at revision {revision}", file.display());
                    ExitCode::SUCCESS
                }
                Ok(Err(error)) => fail(&error.to_string()),
                Err(error) => fail(&error),
            }
        }
        RoutesCommand::Pull { config, format } => {
            let config = match ServerConfig::load(&config) {
                Ok(config) => config,
                Err(error) => return fail(&error.to_string()),
            };
            let (routes, revision) = match run_blocking(remote::pull(&config.source, &config.reload.limits)) {
                Ok(Ok(pulled)) => pulled,
                Ok(Err(error)) => return fail(&error.to_string()),
                Err(error) => return fail(&error),
            };
            let text = match format.as_str() {
                "json" => serde_json::to_string_pretty(&routes).map(|t| t + "\n").map_err(|e| e.to_string()),
                "yaml" => serde_norway::to_string(&routes).map_err(|e| e.to_string()).map(|body| match revision {
                    Some(revision) => format!("# graygate routes pull: revision {revision}\n{body}"),
                    None => body,
                }),
                other => Err(format!("--format {other}: use yaml or json")),
            };
            match text {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            }
        }
    }
}

/// Runs one command's async work on a small runtime.
fn run_blocking<T>(work: impl Future<Output = T>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    Ok(runtime.block_on(work))
}

// glibc's malloc showed up at ~6% of the proxy's CPU under load; mimalloc's thread-local
// free lists suit hyper's many small, short-lived allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
