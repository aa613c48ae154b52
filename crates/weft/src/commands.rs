//! What each command does: thin glue from parsed flags to the host, build and client libraries.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use weft_client::{default_state_dir, prepare_deploy, Client, PreparedDeploy};
use weft_controller::Controller;
use weft_host::api::BatchResult;
use weft_host::member::{LatticeOptions, Member};
use weft_host::{AppStatus, DeployOutcome, Host, HostConfig};

use crate::cli::{
    AppCommand, BuildArgs, CallArgs, Cli, Command, ComposeArgs, DeployArgs, DevArgs, GetCommand,
    Global, HostArgsOnly, HostConnection, HostOutput, InspectArgs, KeyCommand, LatticeArgs,
    NewArgs, PullArgs, PushArgs, SecretCommand, SecretKeyArgs, SecretPutArgs, ServeArgs, SignArgs,
    UpArgs, VerifyArgs,
};

/// Runs one command.
pub async fn run(cli: Cli) -> Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Up(args) => up(&global, args).await,
        Command::Host(args) => {
            if args.lattice.nats.is_none() {
                anyhow::bail!(
                    "`weft host` joins a lattice: give --nats URL (or run `weft up` for a host of \
                     its own with a control API)"
                );
            }
            serve(
                &global,
                Serving {
                    lattice: args.lattice,
                    serve: args.serve,
                    control_addr: None,
                    apps: Vec::new(),
                    build: false,
                    registries: Default::default(),
                },
            )
            .await
        }
        Command::Get(command) => get(&global, command).await,
        Command::Build(args) => build(args).await,
        Command::Status(HostOutput { output, connection }) => {
            let status = client(&global, &connection)?.host_status().await?;
            if output.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("weft {} serving {} app(s)", status.version, status.apps);
                println!("state dir:     {}", status.state_dir);
                println!("allocator:     {}", status.allocator);
                println!("compilations:  {}", status.compilations);
                println!(
                    "guest memory:  {} MiB of a {} MiB budget",
                    status.memory_in_use >> 20,
                    status.memory_budget >> 20
                );
                println!("listeners:     {}", status.listeners.join(", "));
                if let Some(lattice) = &status.lattice {
                    println!(
                        "lattice:       {} as host {} over {} (leader: {})",
                        lattice.name,
                        lattice.host,
                        lattice.nats,
                        lattice.leader.as_deref().unwrap_or("none yet")
                    );
                }
            }
            Ok(())
        }
        Command::App(command) => app(&global, command).await,
        Command::Secret(command) => secret(&global, command).await,
        Command::Compose(args) => compose(args),
        Command::Push(args) => push(args).await,
        Command::Pull(args) => pull(args).await,
        Command::Inspect(args) => inspect(&global, args).await,
        Command::New(args) => new_project(args),
        Command::Dev(args) => dev(&global, args).await,
        Command::Call(args) => call(&global, args).await,
        Command::Sign(args) => sign(args),
        Command::Verify(args) => verify(args),
        Command::Key(KeyCommand::Generate { name }) => generate_key(&name),
        Command::Completions(args) => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "weft",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

fn new_project(args: NewArgs) -> Result<()> {
    if args.list {
        for template in crate::new::TEMPLATES {
            println!("{:<16} {}", template.name, template.about);
        }
        return Ok(());
    }
    let (template, name) = match &args.words[..] {
        [name] => (&crate::new::TEMPLATES[0], name),
        [template, name] => (crate::new::template(template)?, name),
        _ => anyhow::bail!("give a NAME, and a TEMPLATE before it if not rust-http"),
    };
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(name));
    crate::new::create(template, name, &dir)?;
    println!(
        "created {} from {} in {}",
        name,
        template.name,
        dir.display()
    );
    println!("next:\n  cd {}\n  weft dev", dir.display());
    Ok(())
}

/// A host already running for this state dir (or --url), if one answers.
async fn running_host(global: &Global, host: &HostConnection) -> Option<Client> {
    let client = client(global, host).ok()?;
    client.host_status().await.ok().map(|_| client)
}

async fn dev(global: &Global, args: DevArgs) -> Result<()> {
    let project = crate::dev::Project::find(&args.dir)?;
    let registries = args.registry.registries();
    let (client, mut embedded) = match running_host(global, &args.connection).await {
        Some(client) => {
            eprintln!("using the weft host already running");
            (client, None)
        }
        None => {
            if args.connection.url.is_some() {
                anyhow::bail!("no weft host answers at --url; start one or leave --url out");
            }
            let task = tokio::spawn({
                let global = global.clone();
                let serving = Serving {
                    lattice: LatticeArgs {
                        nats: None,
                        lattice: "default".into(),
                        labels: Vec::new(),
                        host_id: None,
                        http: args.http,
                        nats_auth: Default::default(),
                    },
                    serve: args.serve,
                    control_addr: Some(args.control_addr),
                    apps: Vec::new(),
                    build: false,
                    registries: registries.clone(),
                };
                async move { serve(&global, serving).await }
            });
            let client = loop {
                if task.is_finished() {
                    return match task.await {
                        Ok(Err(e)) => Err(e.context("cannot start a host for weft dev")),
                        _ => Err(anyhow::anyhow!("the host for weft dev stopped at start")),
                    };
                }
                if let Some(client) = running_host(global, &args.connection).await {
                    break client;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            };
            (client, Some(task))
        }
    };
    let sources = crate::dev::source_times(&project.root);
    if let Err(e) = project.build_and_deploy(&client, &registries, true).await {
        eprintln!("error: {e:#}");
        eprintln!(
            "fix it and save; weft dev is watching {}",
            project.root.display()
        );
    }
    let (_watcher, mut changes) = crate::dev::watch(&project.root)?;
    eprintln!(
        "watching {} for changes; Ctrl-C stops",
        project.root.display()
    );
    // A save made while the first build ran, or before the watch began, is not an event the
    // watcher will ever send.
    let mut missed = Some(crate::dev::changed_since(&project.root, &sources))
        .filter(|missed| !missed.is_empty());
    let started_here = embedded.is_some();
    let host_stopped = async {
        match embedded.as_mut() {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(host_stopped);
    loop {
        tokio::select! {
            changed = async { match missed.take() {
                Some(missed) => Some(missed),
                None => changes.recv().await,
            } } => {
                let Some(changed) = changed else { break };
                let names: Vec<String> = changed
                    .iter()
                    .map(|p| p.strip_prefix(&project.root).unwrap_or(p).display().to_string())
                    .collect();
                eprintln!("changed: {}", names.join(", "));
                if let Err(e) = project.build_and_deploy(&client, &registries, false).await {
                    eprintln!("error: {e:#}");
                    eprintln!("the previous version keeps serving; fix it and save");
                }
            }
            () = shutdown_signal() => break,
            stopped = &mut host_stopped => {
                return match stopped {
                    Ok(result) => result.context("the host for weft dev stopped"),
                    Err(e) => Err(e.into()),
                };
            }
        }
    }
    // The host started here sees the same Ctrl-C and finishes its requests in flight.
    if started_here {
        let _ = host_stopped.await;
    }
    Ok(())
}

/// Splits `APP/COMPONENT`.
fn app_component(target: &str) -> Result<(&str, &str)> {
    match target.split_once('/') {
        Some((app, component))
            if !app.is_empty() && !component.is_empty() && !component.contains('/') =>
        {
            Ok((app, component))
        }
        _ => anyhow::bail!("`{target}` is not APP/COMPONENT, e.g. greet/greeter"),
    }
}

/// Whether `target` names a deployed component rather than a registry reference: `app/name`
/// with no registry host (`:` port, `.` domain) or tag.
fn names_deployed(target: &str) -> bool {
    app_component(target).is_ok() && !target.contains([':', '.', '@'])
}

async fn inspect(global: &Global, args: InspectArgs) -> Result<()> {
    let path = std::path::Path::new(&args.target);
    let bytes = if path.exists() {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
    } else if names_deployed(&args.target) {
        let (app, component) = app_component(&args.target)?;
        let client = client(global, &args.connection)?;
        let status = client.status(app).await?;
        let Some(found) = status.components.iter().find(|c| c.name == component) else {
            let names: Vec<&str> = status.components.iter().map(|c| c.name.as_str()).collect();
            anyhow::bail!(
                "app `{app}` has no component `{component}`; its components: {}",
                names.join(", ")
            );
        };
        client.component(&found.digest).await?
    } else {
        let (_, bytes) = args
            .registry
            .registries()
            .pull(&args.target)
            .await
            .with_context(|| {
                format!(
                    "`{}` is neither a file, nor APP/COMPONENT, nor a reference that could be pulled",
                    args.target
                )
            })?;
        bytes
    };
    let inspection = weft_inspect::inspect(&args.target, &bytes)?;
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
        return Ok(());
    }
    println!("component: {}", inspection.source);
    println!(
        "size:      {} KiB ({} bytes)",
        inspection.size.div_ceil(1024),
        inspection.size
    );
    println!("digest:    sha256:{}", inspection.digest);
    let reset = if inspection.data_image > weft_api::LARGE_IMAGE_BYTES {
        "a large image: a fresh instance's memory is reset by the pages a request dirtied, up to 16 MiB"
    } else {
        "a fresh instance's memory is reset by the pages a request dirtied"
    };
    println!(
        "memory:    {} KiB of data at instantiation; {reset}",
        inspection.data_image.div_ceil(1024)
    );
    println!("imports:");
    let width = inspection
        .imports
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(0);
    for import in &inspection.imports {
        println!("  {:<width$}  {}", import.name, import.provider);
    }
    println!("exports:");
    for export in &inspection.exports {
        println!("  {export}");
    }
    println!("world:");
    for line in inspection.wit.lines() {
        println!("  {line}");
    }
    let missing: Vec<&str> = inspection.unsatisfied().map(|i| i.name.as_str()).collect();
    if missing.is_empty() {
        println!(
            "weft provides every import (those marked `needs a link` once the manifest links them)"
        );
    } else {
        println!(
            "{} import(s) nothing in weft provides: {} (a component link to a component \
             exporting it, or `weft compose`, can)",
            missing.len(),
            missing.join(", ")
        );
    }
    Ok(())
}

async fn call(global: &Global, args: CallArgs) -> Result<()> {
    let (app, component) = app_component(&args.target)?;
    let results = client(global, &args.connection)?
        .call(app, component, &args.function, args.args)
        .await?;
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for result in results {
            println!("{result}");
        }
    }
    Ok(())
}

fn state_dir(global: &Global) -> PathBuf {
    global.state_dir.clone().unwrap_or_else(default_state_dir)
}

fn client(global: &Global, host: &HostConnection) -> Result<Client> {
    match (&host.url, &host.token) {
        (Some(url), Some(token)) => Ok(Client::new(url, token)),
        _ => Ok(Client::for_state_dir(&state_dir(global))?),
    }
}

async fn prepare(
    path: PathBuf,
    build: bool,
    registries: &weft_oci::Registries,
) -> Result<PreparedDeploy> {
    let shown = path.display().to_string();
    let mut prepared = tokio::task::spawn_blocking(move || prepare_deploy(&path, build))
        .await?
        .with_context(|| format!("cannot deploy {shown}"))?;
    prepared
        .resolve(registries)
        .await
        .with_context(|| format!("cannot deploy {shown}"))?;
    Ok(prepared)
}

async fn push(args: PushArgs) -> Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let pushed = args
        .registry
        .registries()
        .push(&args.reference, bytes)
        .await?;
    println!("pushed {} as {}", args.file.display(), pushed.pinned);
    println!("component digest: sha256:{}", pushed.digest);
    Ok(())
}

async fn pull(args: PullArgs) -> Result<()> {
    let (resolved, bytes) = args.registry.registries().pull(&args.reference).await?;
    let output = args.output.unwrap_or_else(|| {
        let repository = args.reference.split(['@', ':']).next().unwrap_or_default();
        let name = repository.rsplit('/').next().unwrap_or("component");
        PathBuf::from(format!("{name}.wasm"))
    });
    std::fs::write(&output, &bytes)
        .with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "pulled {} ({} bytes, sha256:{}) to {}",
        resolved.pinned,
        bytes.len(),
        resolved.digest,
        output.display()
    );
    Ok(())
}

/// Prints what a deploy did.
pub fn print_outcome(outcome: &DeployOutcome) {
    for warning in &outcome.warnings {
        eprintln!("warning: {warning}");
    }
    if outcome.unchanged {
        println!(
            "{} {} is already deployed; nothing changed",
            outcome.app, outcome.version
        );
        return;
    }
    let replaced = outcome
        .previous
        .as_ref()
        .map(|p| format!(", replacing {p}"))
        .unwrap_or_default();
    println!(
        "deployed {} {}{replaced} ({} component(s) compiled)",
        outcome.app, outcome.version, outcome.compiled
    );
    if outcome.relinked > 0 {
        println!("re-linked {} app(s) that use it", outcome.relinked);
    }
    for failure in &outcome.relink_failures {
        println!("not re-linked, still on the previous version: {failure}");
    }
}

/// What a serving host is started with (`weft up` and `weft host`).
struct Serving {
    lattice: LatticeArgs,
    serve: ServeArgs,
    /// None: no control API (`weft host`).
    control_addr: Option<std::net::SocketAddr>,
    apps: Vec<PathBuf>,
    build: bool,
    /// How to reach the registries of the given apps' OCI images.
    registries: weft_oci::Registries,
}

async fn up(global: &Global, args: UpArgs) -> Result<()> {
    if !args.control_addr.ip().is_loopback() && !args.control_public {
        anyhow::bail!(
            "the control API would listen on {}, reachable from other machines over plain HTTP \
             with its token in clear; give a loopback address (127.0.0.1:7878), or pass \
             --control-public to accept that",
            args.control_addr
        );
    }
    serve(
        global,
        Serving {
            lattice: args.lattice,
            serve: args.serve,
            control_addr: Some(args.control_addr),
            apps: args.apps,
            build: args.build,
            registries: args.registry.registries(),
        },
    )
    .await
}

/// Stores a given app's components on this host, fetching those of OCI images.
async fn store_components(
    host: &Host,
    deploy: &PreparedDeploy,
    registries: &weft_oci::Registries,
) -> Result<()> {
    for digest in deploy.digests() {
        if !host.blobs().contains(digest)? {
            let bytes = deploy.bytes_of(digest, registries).await?;
            host.blobs().put(digest, &bytes)?;
        }
    }
    Ok(())
}

async fn serve(global: &Global, args: Serving) -> Result<()> {
    if args.serve.no_metrics {
        weft_metrics::turn_off();
    }
    // Every connection is a file descriptor; the usual soft limit of 1024 would cap a busy host.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    // The state dir holds secrets, app data and uploaded components: whatever the host creates
    // there is readable by this user only (directories 0700, files 0600).
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    // Build and read everything first: a broken manifest stops here, before a host starts.
    let mut deploys = Vec::new();
    for path in &args.apps {
        deploys.push(prepare(path.clone(), args.build, &args.registries).await?);
    }
    let (memory_budget, ceilings) = args.serve.limits().map_err(anyhow::Error::msg)?;
    let state_dir = state_dir(global);
    let config = HostConfig {
        state_dir: state_dir.clone(),
        pooling: !args.serve.no_pooling,
        max_request_body: args.serve.max_request_body,
        memory_budget,
        ceilings,
        keep_versions: args.serve.keep_versions.into(),
        strict: args.serve.strict,
        http_address: args.lattice.http,
        trusted_keys: match &args.serve.trusted_keys {
            Some(path) => Some(weft_signing::TrustedKeys::from_file(path)?),
            None => None,
        },
    };
    let host: Arc<Host> = Host::start(config).await?;
    let lattice = match &args.lattice.nats {
        Some(url) => Some(join(&host, &args.lattice, url).await?),
        None => None,
    };
    let apps = weft_host::apps::apps_of(&host, lattice.as_ref().map(|(m, _, _)| m));
    // One app that cannot be served (its port is taken, an import nothing provides) is reported
    // and left out; the others are served, as when a restarted host restores its apps. They go
    // in one batch: stored together, switched on together.
    let not_served = |name: &str, e: &dyn std::fmt::Display| {
        tracing::error!(app = %name, "not served: {e:#}");
        eprintln!("error: app `{name}` is not served: {e:#}");
    };
    let mut requests = Vec::with_capacity(deploys.len());
    let mut names = Vec::with_capacity(deploys.len());
    for deploy in deploys {
        match store_components(&host, &deploy, &args.registries).await {
            Ok(()) => {
                names.push(deploy.app_name);
                requests.push(deploy.request);
            }
            Err(e) => not_served(&deploy.app_name, &e),
        }
    }
    for (name, result) in names.iter().zip(apps.deploy_many(requests).await) {
        match result {
            Ok(outcome) => print_outcome(&outcome),
            Err(e) => not_served(name, &e),
        }
    }

    let metrics_access = if args.serve.metrics_open {
        weft_host::control::MetricsAccess::Open
    } else {
        weft_host::control::MetricsAccess::Token
    };
    let metrics_task = match args.serve.metrics_addr {
        Some(address) => {
            let (bound, serve_metrics) =
                weft_host::control::serve_metrics(host.state_dir(), address, metrics_access)
                    .await?;
            println!("metrics at http://{bound}/metrics");
            Some(tokio::spawn(serve_metrics))
        }
        None => None,
    };
    // The control API (and its control.json) appears only once the given apps are serving, so
    // whoever waits for it knows the host is ready.
    let control_task = match args.control_addr {
        Some(address) => {
            let member = lattice.as_ref().map(|(m, _, _)| m.clone());
            let (control, serve_control) =
                weft_host::control::serve(host.clone(), member.clone(), address, metrics_access)
                    .await?;
            if let Some(member) = member {
                member.set_control_url(format!("http://{control}"));
            }
            for app in host.list()? {
                print_app_line(&app);
            }
            println!(
                "weft is up (control API http://{control}, state dir {}); Ctrl-C stops it",
                host.state_dir().display()
            );
            tokio::spawn(serve_control)
        }
        None => {
            println!(
                "weft host is up in lattice `{}` (state dir {}); Ctrl-C stops it",
                args.lattice.lattice,
                host.state_dir().display()
            );
            tokio::spawn(std::future::pending())
        }
    };

    tokio::select! {
        result = control_task => {
            result?.context("the control API stopped")?;
        }
        () = shutdown_signal() => {
            tracing::info!(grace = ?args.serve.shutdown_grace, "shutting down: finishing requests in flight");
        }
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    let _ = std::fs::remove_file(weft_host::control::endpoint_path(host.state_dir()));
    if let Some((member, stop, controller)) = lattice {
        // Hand the lease over now rather than after its TTL.
        let _ = stop.send(());
        let _ = controller.await;
        drop(member);
    }
    let unfinished = host.drain(args.serve.shutdown_grace).await;
    if unfinished > 0 {
        tracing::warn!(
            unfinished,
            "requests still running at the end of the grace period were cut off"
        );
    }
    Ok(())
}

/// The NATS credentials the flags and the environment give, their files read.
fn nats_auth(args: &crate::cli::NatsAuthArgs) -> Result<weft_lattice::NatsAuth> {
    use weft_lattice::Secret;
    let read = |what: &str, path: &PathBuf| -> Result<Secret> {
        std::fs::read_to_string(path)
            .map(Secret::new)
            .with_context(|| format!("cannot read the NATS {what} file {}", path.display()))
    };
    // A file given on the command line wins over the variable.
    let secret = |what: &str, file: &Option<PathBuf>, variable: &str| -> Result<Option<Secret>> {
        match file {
            Some(path) => read(what, path).map(Some),
            None => Ok(std::env::var(variable)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)),
        }
    };
    let password = secret("password", &args.nats_password_file, "WEFT_NATS_PASSWORD")?;
    let token = secret("token", &args.nats_token_file, "WEFT_NATS_TOKEN")?;
    let auth = weft_lattice::NatsAuth {
        credentials: args
            .nats_credentials
            .as_ref()
            .map(|p| read("credentials", p))
            .transpose()?,
        nkey: args
            .nats_nkey_file
            .as_ref()
            .map(|p| read("NKey seed", p))
            .transpose()?,
        user: args.nats_user.clone(),
        password,
        token,
        tls_ca: args.nats_tls_ca.clone(),
        tls_cert: args.nats_tls_cert.clone(),
        tls_key: args.nats_tls_key.clone(),
    };
    auth.check().map_err(anyhow::Error::msg)?;
    Ok(auth)
}

/// Joins the lattice and starts this host's controller; returns the member, the controller's
/// stop switch and its task.
async fn join(
    host: &Arc<Host>,
    args: &LatticeArgs,
    url: &str,
) -> Result<(
    Arc<Member>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    let host_id = weft_host::member::host_id(host.state_dir(), args.host_id.as_deref())?;
    let from_env = std::env::var("WEFT_NATS").is_ok_and(|v| v == url);
    if weft_lattice::redact_credentials(url) != url && !from_env {
        tracing::warn!(
            "the --nats URL holds credentials, which `ps` shows to every user of this machine; \
             give them with --nats-user and WEFT_NATS_PASSWORD (or --nats-credentials) instead"
        );
    }
    let options = LatticeOptions {
        nats_url: url.to_string(),
        nats_auth: nats_auth(&args.nats_auth)?,
        lattice: args.lattice.clone(),
        host_id,
        labels: args.labels.iter().cloned().collect(),
    };
    let member = Member::join(host.clone(), options)
        .await
        .context("cannot join the lattice")?;
    let controller = Controller::new(
        member.state().clone(),
        member.id(),
        member.subjects().clone(),
        member.jetstream().client().clone(),
        member.directory(),
        member.leadership(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller.run(async move {
        let _ = stopped.await;
    }));
    Ok((member, stop, task))
}

async fn get(global: &Global, command: GetCommand) -> Result<()> {
    match command {
        GetCommand::Hosts(HostOutput { output, connection }) => {
            let client = client(global, &connection)?;
            let hosts = client.hosts().await?;
            if output.json {
                println!("{}", serde_json::to_string_pretty(&hosts)?);
                return Ok(());
            }
            println!(
                "{:<16} {:<8} {:<7} {:<5} {:<24} HTTP",
                "HOST", "ALIVE", "LEADER", "APPS", "LABELS"
            );
            for h in &hosts {
                let labels: Vec<String> =
                    h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let alive = if h.alive {
                    "yes".to_string()
                } else {
                    format!("gone {}s", h.silent_ms / 1000)
                };
                println!(
                    "{:<16} {:<8} {:<7} {:<5} {:<24} {}",
                    h.id,
                    alive,
                    if h.leader && h.alive { "*" } else { "" },
                    h.apps.len(),
                    labels.join(","),
                    h.http.as_deref().unwrap_or("-")
                );
            }
        }
        GetCommand::Inventory(args) => {
            let client = client(global, &args.connection)?;
            let hosts = match &args.host {
                Some(id) => vec![client.lattice_host(id).await?],
                None => client.hosts().await?,
            };
            if args.output.json {
                println!("{}", serde_json::to_string_pretty(&hosts)?);
                return Ok(());
            }
            for h in &hosts {
                let state = if h.alive { "" } else { " (gone)" };
                println!("host {}{state}:", h.id);
                if h.apps.is_empty() {
                    println!("  no apps");
                }
                for app in &h.apps {
                    let caps: Vec<String> = app
                        .components
                        .iter()
                        .map(|c| format!("{} {}/{}", c.name, c.active_instances, c.max_instances))
                        .collect();
                    println!(
                        "  {:<20} {:<12} {:<9} {}",
                        app.app,
                        app.version,
                        app.phase,
                        caps.join(", ")
                    );
                    if let Some(reason) = &app.reason {
                        println!("    reason: {reason}");
                    }
                }
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn build(args: BuildArgs) -> Result<()> {
    let options = weft_build::BuildOptions { world: args.world };
    let dir = args.dir.clone();
    let built = tokio::task::spawn_blocking(move || weft_build::build(&dir, &options))
        .await?
        .with_context(|| format!("cannot build {}", args.dir.display()))?;
    println!(
        "built {} ({} KiB, {:.1}s, {})",
        built.path.display(),
        built.size / 1024,
        built.elapsed.as_secs_f64(),
        built.toolchain
    );
    Ok(())
}

fn print_app_line(app: &AppStatus) {
    let routes: Vec<&str> = app
        .components
        .iter()
        .flat_map(|c| c.routes.iter().map(String::as_str))
        .collect();
    println!(
        "{:<24} {:<16} {:<9} {}",
        app.name,
        app.version,
        app.phase.to_string(),
        routes.join(" ")
    );
}

async fn app(global: &Global, command: AppCommand) -> Result<()> {
    match command {
        AppCommand::Deploy(DeployArgs {
            manifests,
            build,
            output,
            registry,
            connection,
        }) => {
            let client = client(global, &connection)?;
            let registries = registry.registries();
            // Every manifest is read (and built) before anything is sent: a broken file stops
            // the whole command, with nothing deployed.
            let mut prepared = Vec::with_capacity(manifests.len());
            for manifest in manifests {
                prepared.push(prepare(manifest, build, &registries).await?);
            }
            if let [one] = prepared.as_slice() {
                let outcome = client.deploy(one, &registries).await?;
                if output.json {
                    println!("{}", serde_json::to_string_pretty(&outcome)?);
                } else {
                    print_outcome(&outcome);
                }
                return Ok(());
            }
            let batch = client.deploy_many(&prepared, &registries).await?;
            if output.json {
                println!("{}", serde_json::to_string_pretty(&batch)?);
            }
            let mut refused = 0;
            for result in &batch.results {
                match result {
                    BatchResult::Deployed(outcome) if !output.json => print_outcome(outcome),
                    BatchResult::Deployed(_) => {}
                    BatchResult::Refused { origin, error, .. } => {
                        refused += 1;
                        if !output.json {
                            eprintln!("error: {origin}: {error}");
                        }
                    }
                }
            }
            if refused > 0 {
                anyhow::bail!(
                    "{refused} of {} apps were not deployed (the others are serving)",
                    batch.results.len()
                );
            }
        }
        AppCommand::List(HostOutput { output, connection }) => {
            let apps = client(global, &connection)?.list().await?;
            if output.json {
                println!("{}", serde_json::to_string_pretty(&apps)?);
            } else if apps.is_empty() {
                println!("no apps deployed; deploy one with `weft app deploy APP.yaml`");
            } else {
                println!("{:<24} {:<16} {:<9} ROUTES", "NAME", "VERSION", "PHASE");
                for app in &apps {
                    print_app_line(app);
                }
            }
        }
        AppCommand::Status(named) => {
            let app = client(global, &named.connection)?
                .status(&named.name)
                .await?;
            if named.output.json {
                println!("{}", serde_json::to_string_pretty(&app)?);
            } else {
                print_status(&app);
            }
        }
        AppCommand::Validate(args) => {
            let found = weft_client::validate(&args.manifest)
                .with_context(|| format!("{} is not valid", args.manifest.display()))?;
            if args.output.json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                for warning in &found.warnings {
                    eprintln!("warning: {warning}");
                }
                for error in &found.errors {
                    eprintln!("error: {error}");
                }
            }
            if !found.errors.is_empty() {
                anyhow::bail!(
                    "{} is not valid: {} problem(s) would refuse its deploy",
                    args.manifest.display(),
                    found.errors.len()
                );
            }
            if !args.output.json {
                println!(
                    "{} is valid: app `{}`, {} component(s)",
                    args.manifest.display(),
                    found.app,
                    found.components
                );
            }
        }
        AppCommand::Undeploy(named) => {
            client(global, &named.connection)?
                .undeploy(&named.name)
                .await?;
            println!("undeployed {}", named.name);
        }
    }
    Ok(())
}

fn compose(args: ComposeArgs) -> Result<()> {
    let read = |path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let socket = read(&args.socket)?;
    let plugs = args.plugs.iter().map(read).collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = std::iter::once(&args.socket)
        .chain(&args.plugs)
        .map(|p| p.display().to_string())
        .collect();
    let parts: Vec<weft_compose::Part<'_>> = plugs
        .iter()
        .zip(&names[1..])
        .map(|(bytes, name)| weft_compose::Part { name, bytes })
        .collect();
    let joined = weft_compose::compose(
        &weft_compose::Part {
            name: &names[0],
            bytes: &socket,
        },
        &parts,
    )?;
    std::fs::write(&args.output, &joined)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!(
        "composed {} ({} KiB)",
        args.output.display(),
        joined.len() / 1024
    );
    Ok(())
}

async fn secret(global: &Global, command: SecretCommand) -> Result<()> {
    match command {
        SecretCommand::Put(SecretPutArgs {
            key,
            file,
            connection,
        }) => {
            let client = client(global, &connection)?;
            let mut value = match &file {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("cannot read the secret from {}", path.display()))?,
                None => {
                    use std::io::{IsTerminal, Read};
                    if std::io::stdin().is_terminal() {
                        eprintln!("type the value of `{key}`, then Ctrl-D:");
                    }
                    let mut value = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut value)
                        .context("cannot read the secret from standard input")?;
                    value
                }
            };
            // `echo value | weft secret put` carries a newline nobody meant as part of the value.
            if file.is_none() && value.ends_with(b"\n") {
                value.pop();
                if value.ends_with(b"\r") {
                    value.pop();
                }
            }
            if value.is_empty() {
                anyhow::bail!("the value of `{key}` is empty; pipe it in, e.g. `weft secret put {key} < token.txt`");
            }
            client.put_secret(&key, value).await?;
            println!("secret `{key}` set");
        }
        SecretCommand::List(HostArgsOnly { connection }) => {
            let client = client(global, &connection)?;
            let keys = client.secret_keys().await?;
            if keys.is_empty() {
                println!("no secrets; set one with `weft secret put KEY < value-file`");
            }
            for key in keys {
                println!("{key}");
            }
        }
        SecretCommand::Delete(SecretKeyArgs { key, connection }) => {
            let client = client(global, &connection)?;
            client.delete_secret(&key).await?;
            println!("secret `{key}` deleted");
        }
    }
    Ok(())
}

fn print_status(app: &AppStatus) {
    println!("app:       {}", app.name);
    println!("version:   {}", app.version);
    println!("phase:     {}", app.phase);
    if let Some(reason) = &app.reason {
        println!("reason:    {reason}");
    }
    println!("manifest:  {}", app.origin);
    println!("versions:  {}", app.versions.join(", "));
    if !app.hosts.is_empty() {
        let hosts: Vec<String> = app
            .hosts
            .iter()
            .map(|(h, n)| format!("{h} ({n})"))
            .collect();
        println!("hosts:     {}", hosts.join(", "));
    }
    for event in &app.events {
        println!("event:     {event}");
    }
    for warning in &app.warnings {
        println!("warning:   {warning}");
    }
    for (used, version) in &app.uses {
        println!("uses:      {used} {version}");
    }
    if !app.dependents.is_empty() {
        let mut by_version: std::collections::BTreeMap<&str, usize> = Default::default();
        for version in app.dependents.values() {
            *by_version.entry(version.as_str()).or_default() += 1;
        }
        let counts: Vec<String> = by_version
            .iter()
            .map(|(version, n)| format!("{n} on {version}"))
            .collect();
        println!(
            "used by:   {} app(s): {}",
            app.dependents.len(),
            counts.join(", ")
        );
    }
    for c in &app.components {
        println!("component {}:", c.name);
        println!(
            "  image:     {} (sha256:{})",
            c.image,
            &c.digest[..c.digest.len().min(12)]
        );
        println!(
            "  limits:    memory {} MiB, timeout {} ms, {} instances",
            c.max_memory / (1024 * 1024),
            c.timeout_ms,
            c.max_instances
        );
        println!("  active:    {} instance(s)", c.active_instances);
        if !c.engine.is_empty() {
            println!("  runs on:   {}", c.engine);
        }
        match &c.reuse {
            Some(reuse) => println!(
                "  reuse:     {reuse}; {} warm instance(s)",
                c.warm_instances
            ),
            None => match c.reset_instances {
                Some(ready) => println!(
                    "  reuse:     off (a fresh instance per request, reset in place once it \
                     answered; {ready} ready)"
                ),
                None => println!("  reuse:     off (a fresh instance per request)"),
            },
        }
        for route in &c.routes {
            println!("  route:     {route}");
        }
        for event in &c.events {
            println!("  called on: {event}");
        }
    }
}

/// `weft sign`: embeds the key's signature, writing over the component unless told otherwise.
fn sign(args: SignArgs) -> Result<()> {
    let key = weft_signing::SigningKey::from_file(&args.key)?;
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let signed = key.sign(&bytes)?;
    let output = args.output.unwrap_or(args.component);
    write_atomically(&output, &signed)?;
    println!("signed {} with key {}", output.display(), key.id());
    Ok(())
}

/// `weft verify`: exits non-zero, saying why, unless a trusted key signed the component.
fn verify(args: VerifyArgs) -> Result<()> {
    let trusted = weft_signing::TrustedKeys::from_file(&args.trusted_keys)?;
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    match trusted.verify(&bytes) {
        Ok(key) => {
            println!("{}: signed by trusted key {key}", args.component.display());
            Ok(())
        }
        Err(reason) => anyhow::bail!("{} is refused: {reason}", args.component.display()),
    }
}

/// `weft key generate NAME`: NAME.key readable by its owner only, and NAME.pub.
fn generate_key(name: &std::path::Path) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let key = weft_signing::SigningKey::generate();
    let secret = name.with_extension("key");
    let public = name.with_extension("pub");
    for path in [&secret, &public] {
        if path.exists() {
            anyhow::bail!(
                "{} exists; move it away or choose another name (a key is never overwritten)",
                path.display()
            );
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)
        .and_then(|mut file| file.write_all(key.secret_pem().as_bytes()))
        .with_context(|| format!("cannot write {}", secret.display()))?;
    std::fs::write(&public, key.public_pem())
        .with_context(|| format!("cannot write {}", public.display()))?;
    println!(
        "key {}: secret {} (keep it private), public {} (add it to hosts' --trusted-keys file)",
        key.id(),
        secret.display(),
        public.display()
    );
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file beside it, so a reader never sees half.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let partial = path.with_extension("wasm.partial");
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write {}", path.display()))
}
