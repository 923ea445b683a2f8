//! `juy-calendar`: the Calendar Service's command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use juy_calendar::config::{Settings, Sources};
use juy_calendar::{dev, server, telemetry};

/// The Juy Calendar Service: syncs users' Google, Microsoft and CalDAV
/// calendars and serves them over gRPC and REST.
#[derive(Debug, Parser)]
#[command(name = "juy-calendar", version, about, long_about = None)]
struct Cli {
    /// A TOML settings file; `JUY_<SECTION>__<KEY>` environment variables override it.
    #[arg(long, global = true, env = "JUY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC and REST until SIGTERM (migrating first unless database.migrate_on_start = false).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print a new random master key (32 bytes, base64) to add to crypto.master_keys.
    Keygen,
    /// Re-wrap every user's data key under the newest master key version.
    RotateKeys,
    /// DEVELOPMENT ONLY: serve plaintext on localhost with generated keys, seed a dev user and print tokens.
    Dev {
        /// Where the generated dev keys are kept between runs.
        #[arg(long, default_value = "target/dev")]
        state_dir: PathBuf,
    },
    /// DEVELOPMENT ONLY: run the provider sandbox alone (fake Google and Microsoft with
    /// seeded dev accounts) and print the settings that point a server at it.
    #[cfg(feature = "sandbox")]
    Sandbox {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: std::net::SocketAddr,
    },
}

fn sources(cli: &Cli, defaults: Vec<(String, String)>) -> Sources {
    // Later entries win: the real environment overrides the defaults.
    Sources {
        file: cli.config.clone(),
        env: defaults.into_iter().chain(std::env::vars()).collect(),
    }
}

fn load(sources: &Sources) -> anyhow::Result<Settings> {
    Ok(Settings::load(sources)?)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Keygen => {
            let key = juy_crypto::MasterKey::generate();
            println!("{}", *key.to_base64());
            eprintln!(
                "add it as the next version, e.g. crypto.master_keys = \"2:<key>,1:<old key>\"; then run rotate-keys"
            );
            Ok(())
        }
        Command::Migrate => {
            let settings = load(&sources(&cli, vec![]))?;
            let _guard = telemetry::init(&settings.telemetry)?;
            let applied = juy_store::run_migrations(&settings.database.database_url).await?;
            println!(
                "applied {} migration(s){}",
                applied.len(),
                if applied.is_empty() {
                    String::new()
                } else {
                    format!(": {}", applied.join(", "))
                }
            );
            Ok(())
        }
        Command::RotateKeys => {
            let settings = load(&sources(&cli, vec![]))?;
            let _guard = telemetry::init(&settings.telemetry)?;
            let store = juy_store::Store::connect(&settings.database, settings.keyring.clone())?;
            let report = store.rotate_keys().await?;
            println!(
                "re-wrapped {} data key(s) under master key version {}; {} already current",
                report.rewrapped,
                settings.keyring.active_version(),
                report.already_current
            );
            Ok(())
        }
        Command::Serve => {
            let settings = load(&sources(&cli, vec![]))?;
            let _guard = telemetry::init(&settings.telemetry)?;
            let running = server::start(settings).await?;
            running.run_until(server::shutdown_signal()).await
        }
        #[cfg(feature = "sandbox")]
        Command::Sandbox { addr } => {
            let sandbox = juy_sandbox::Sandbox::new();
            sandbox.seed_dev();
            let running = juy_sandbox::serve_on(sandbox, *addr).await?;
            println!(
                "provider sandbox on {} (control API: {})",
                running.base(),
                running.control_url()
            );
            println!("point a server at it with:");
            for (name, value) in dev::sandbox_env(&running, "http://127.0.0.1:8080") {
                println!("  export {name}='{value}'");
            }
            server::shutdown_signal().await;
            running.stop().await;
            Ok(())
        }
        Command::Dev { state_dir } => {
            let mut defaults = dev::default_env(state_dir)?;
            let receiver = dev::start_reminder_receiver(state_dir).await?;
            defaults.extend(receiver.env());
            #[cfg(feature = "sandbox")]
            let sandbox = {
                let sandbox = juy_sandbox::Sandbox::new();
                sandbox.seed_dev();
                let running = juy_sandbox::start(sandbox).await?;
                defaults.extend(dev::sandbox_env(&running, "http://127.0.0.1:8080"));
                running
            };
            let settings = load(&sources(&cli, defaults))?;
            let _guard = telemetry::init(&settings.telemetry)?;
            let ttl = settings.event_ttl;
            let auth = settings.auth.clone();
            let running = server::start(settings).await?;
            let user = juy_domain::UserId::new("dev-user")?;
            let monday = dev::monday_of(chrono::Utc::now().date_naive());
            let seeded = dev::seed(&running.store, &user, monday, ttl)
                .await
                .context("seeding the dev user")?;
            let secret = match auth.keys.first() {
                Some(juy_api::auth::VerificationKey::Hs256(secret)) => secret.clone(),
                _ => anyhow::bail!("the dev command needs an HS256 secret (auth.hs256_secret_file)"),
            };
            let day = Duration::from_secs(24 * 3600);
            let token = juy_api::auth::sign_hs256(&secret, &auth.issuer, &auth.audience, &user, &[], day);
            let admin = juy_domain::UserId::new("dev-admin")?;
            let admin_token = juy_api::auth::sign_hs256(&secret, &auth.issuer, &auth.audience, &admin, &["admin"], day);
            std::fs::write(state_dir.join("dev-token"), &token)?;
            std::fs::write(state_dir.join("dev-admin-token"), &admin_token)?;
            let start = format!("{}T00:00:00Z", monday);
            let end = format!("{}T00:00:00Z", monday + chrono::Duration::days(7));
            let (grpc, rest) = (running.grpc_addr, running.rest_addr);
            println!(
                "\n=== Juy Calendar Service (dev) ===\n\
                 REST  http://{rest}   (OpenAPI: http://{rest}/v1/openapi.json)\n\
                 gRPC  {grpc}   (plaintext, reflection on)\n\
                 seeded user `dev-user`: {} calendars, {} events this week\n\n\
                 TOKEN={token}\n\
                 ADMIN_TOKEN={admin_token}\n\
                 (also in {}/dev-token and dev-admin-token; valid 24 h)\n\n\
                 curl -s -H \"Authorization: Bearer $TOKEN\" 'http://{rest}/v1/calendar/events?range={start}/{end}'\n\
                 grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"start_time\":\"{start}\",\"end_time\":\"{end}\"}}' {grpc} juy.calendar.v1.CalendarSync/ListEvents\n\
                 tools/node_modules/.bin/buf curl --protocol grpc --http2-prior-knowledge -H \"authorization: Bearer $TOKEN\" -d '{{\"start_time\":\"{start}\",\"end_time\":\"{end}\"}}' http://{grpc}/juy.calendar.v1.CalendarSync/ListEvents\n\
                 curl -s -H \"Authorization: Bearer $ADMIN_TOKEN\" http://{rest}/v1/admin/connections\n",
                seeded.calendars.len(),
                seeded.events.len(),
                state_dir.display(),
            );
            println!(
                "Reminders go to a local receiver that checks their signature and logs what it gets: {}\n",
                receiver.url
            );
            #[cfg(feature = "sandbox")]
            println!("{}", dev::linking_help(&sandbox.base(), &rest.to_string()));
            let caldav = (
                std::env::var("JUY_DEV_CALDAV_USER"),
                std::env::var("JUY_DEV_CALDAV_PASSWORD"),
            );
            if let (Ok(user), Ok(password)) = caldav {
                println!(
                    "Link the local CalDAV server (Radicale) as an Apple/CalDAV account:\n  \
                     curl -s -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\\n    \
                     -d '{{\"username\":\"{user}\",\"app_specific_password\":\"{password}\"}}' \\\n    \
                     http://{rest}/v1/calendar/connections/caldav:connect\n"
                );
            }
            let result = running.run_until(server::shutdown_signal()).await;
            receiver.stop();
            #[cfg(feature = "sandbox")]
            sandbox.stop().await;
            result
        }
    }
}
