//! The command line as data: what each command and flag means, parsed and nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run WebAssembly components as applications.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// How log lines are written to stderr: text (colored on a terminal only) or json (one
    /// object per line, for log collectors)
    #[arg(
        long,
        global = true,
        env = "WEFT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Where the host keeps its apps, compiled code and control token
    /// [default: weft under the user's data dir]
    #[arg(long, global = true, env = "WEFT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How a command reaches a running host: its control API, found through the state dir unless
/// given.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Host connection")]
pub struct HostConnection {
    /// Control API of a running host; overrides the one found in the state dir
    #[arg(long, env = "WEFT_URL", value_name = "URL", requires = "token")]
    pub url: Option<String>,
    /// Control token for --url
    #[arg(long, env = "WEFT_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a host serving the stored apps and the given manifests (Ctrl-C stops it)
    Up(UpArgs),
    /// Join a lattice as a host without a control API (manage it through any host that has one)
    Host(HostArgs),
    /// Show the lattice: its hosts, or what runs where
    #[command(subcommand)]
    Get(GetCommand),
    /// Start a project from a template (`weft new --list` shows them)
    #[command(
        after_help = "Examples:\n  weft new my-app                 # rust-http\n  weft new \
        python-http my-api\n  weft new rust-keyvalue counter && cd counter && weft dev"
    )]
    New(NewArgs),
    /// Build, deploy and serve the project in DIR, then rebuild and redeploy it on every save
    /// (on the running host, or one started here)
    #[command(
        after_help = "A save that does not build prints the compiler's error and the \
        running version keeps serving; a save that builds replaces it with no failed request. \
        Each build deploys as a version of its own (VERSION-dev.HASH), so nothing needs \
        bumping.\n\nExamples:\n  weft dev\n  weft dev my-app\n  weft dev my-app/app.yaml \
        --control-addr 127.0.0.1:7979"
    )]
    Dev(DevArgs),
    /// Build the component project in DIR (Rust, Python or JavaScript) into
    /// DIR/build/<name>.wasm
    Build(BuildArgs),
    /// Deploy, inspect and remove apps on a running host
    #[command(subcommand)]
    App(AppCommand),
    /// Show the running host: allocator, listeners, compilations
    Status(HostOutput),
    /// Set, list and delete secrets granted to components (values are never printed)
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Join components into one, statically: the others' exports serve SOCKET's imports
    Compose(ComposeArgs),
    /// Push a component to an OCI registry (the wasm artifact layout `wash push` writes)
    #[command(after_help = "Example:\n  weft push build/hello.wasm localhost:5000/hello:1.0")]
    Push(PushArgs),
    /// Pull a component from an OCI registry, checked against its digest
    #[command(after_help = "Example:\n  weft pull ghcr.io/acme/hello:1.0 -o hello.wasm")]
    Pull(PullArgs),
    /// Show a component's world (imports, exports) as WIT, its size and digest, and what in
    /// weft satisfies each import
    #[command(
        after_help = "Examples:\n  weft inspect build/hello.wasm\n  weft inspect \
        localhost:5000/hello:1.0\n  weft inspect hello/hello --json   # a deployed app's component"
    )]
    Inspect(InspectArgs),
    /// Call an exported function of a deployed component, arguments and results in WAVE
    #[command(
        after_help = "Arguments are WAVE values, one per parameter: strings \"hi\", \
        numbers 42, lists [1, 2], records {name: \"x\", n: 1}, options some(1) / none, results \
        ok(\"y\") / err(\"z\"), enums and variants by case name.\n\nExamples:\n  weft call \
        greet/greeter example:greet/greeter.greet '\"Ada\"' '[\"x\", \"y\"]'\n  weft call \
        calc/calc add 1 2"
    )]
    Call(CallArgs),
    /// Sign a component with an Ed25519 key (a wasmsign2 signature embedded in it), for hosts
    /// that run with --require-signature
    #[command(
        after_help = "Examples:\n  weft key generate release\n  weft sign build/app.wasm --key release.key\n  weft verify build/app.wasm --trusted-keys release.pub"
    )]
    Sign(SignArgs),
    /// Check a component's signature against trusted public keys, as a host with
    /// --require-signature does
    Verify(VerifyArgs),
    /// Make signing keys
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Example:\n  weft completions bash > ~/.local/share/bash-completion/completions/weft"
    )]
    Completions(CompletionsArgs),
}

/// `weft new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// [TEMPLATE] NAME: the template (default rust-http) and the project's name
    #[arg(value_name = "[TEMPLATE] NAME", num_args = 1..=2, required_unless_present = "list")]
    pub words: Vec<String>,
    /// List the templates
    #[arg(long)]
    pub list: bool,
    /// Where to write the project [default: ./NAME]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `weft dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The project directory (with its app.yaml), or its manifest
    #[arg(value_name = "DIR|APP.yaml", default_value = ".")]
    pub dir: PathBuf,
    /// Address of the control API of the host `weft dev` starts when none is running
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR")]
    pub control_addr: SocketAddr,
    /// Serve the app's routes on this address instead of the manifest's (of a host started
    /// here)
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub connection: HostConnection,
}

/// `weft sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The component to sign
    #[arg(value_name = "COMPONENT.wasm")]
    pub component: PathBuf,
    /// The secret key: a PEM file from `weft key generate`, or an unencrypted OpenSSH ed25519
    /// key
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Write the signed component here instead of over COMPONENT.wasm
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `weft verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The component to check
    #[arg(value_name = "COMPONENT.wasm")]
    pub component: PathBuf,
    /// The public keys to accept: PEM blocks and `ssh-ed25519` lines
    #[arg(long, value_name = "FILE")]
    pub trusted_keys: PathBuf,
}

/// `weft key`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new Ed25519 key pair: NAME.key (secret, mode 0600) and NAME.pub (for hosts'
    /// trusted-keys files)
    Generate {
        /// The files' path without extension, e.g. keys/release
        #[arg(value_name = "NAME")]
        name: PathBuf,
    },
}

/// `weft inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A component file, an OCI reference (REGISTRY/REPOSITORY:TAG), or APP/COMPONENT of a
    /// running host
    #[arg(value_name = "FILE|REF|APP/COMPONENT")]
    pub target: String,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub connection: HostConnection,
}

/// `weft call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The component, as APP/COMPONENT
    #[arg(value_name = "APP/COMPONENT")]
    pub target: String,
    /// The export: INTERFACE.FUNCTION (e.g. example:greet/greeter.greet), or a function the
    /// component exports at the top
    #[arg(value_name = "INTERFACE.FUNCTION")]
    pub function: String,
    /// One WAVE value per parameter
    #[arg(value_name = "ARG", allow_negative_numbers = true)]
    pub args: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub connection: HostConnection,
}

/// `weft completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    pub shell: clap_complete::Shell,
}

/// How to reach OCI registries. Credentials come from WEFT_REGISTRY_USERNAME and
/// WEFT_REGISTRY_PASSWORD, else from `docker login` (~/.docker/config.json), never from flags.
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    /// A registry (HOST:PORT) to reach over plain HTTP; loopback registries always are
    #[arg(
        long = "insecure-registry",
        value_name = "HOST:PORT",
        env = "WEFT_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
}

impl RegistryArgs {
    /// The registry options these flags and the environment give.
    pub fn registries(&self) -> weft_oci::Registries {
        let mut registries = weft_oci::Registries::from_env();
        registries.insecure.extend(self.insecure.iter().cloned());
        registries
    }
}

/// `weft push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The component file
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where to push it: REGISTRY/REPOSITORY:TAG
    #[arg(value_name = "REF")]
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `weft pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// What to pull: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Where to write the component [default: the repository's last segment, .wasm]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `weft compose`.
#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// The component whose imports are served (e.g. the one in front)
    pub socket: PathBuf,
    /// Components whose exports serve them
    #[arg(required = true)]
    pub plugs: Vec<PathBuf>,
    /// Where to write the joined component
    #[arg(short, long)]
    pub output: PathBuf,
}

/// `weft secret …`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret; the value is read from standard input (or --file), never from the command
    /// line, so it stays out of shell history and process listings
    Put(SecretPutArgs),
    /// List secret keys
    List(HostArgsOnly),
    /// Delete a secret
    Delete(SecretKeyArgs),
}

/// A command that takes nothing but the host to talk to.
#[derive(Debug, Args)]
pub struct HostArgsOnly {
    #[command(flatten)]
    pub connection: HostConnection,
}

/// `weft secret put`.
#[derive(Debug, Args)]
pub struct SecretPutArgs {
    /// The key components' manifests name in properties.secrets[].properties.key
    pub key: String,
    /// Read the value from this file instead of standard input
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub connection: HostConnection,
}

/// A secret's key.
#[derive(Debug, Args)]
pub struct SecretKeyArgs {
    /// The secret's key
    pub key: String,
    #[command(flatten)]
    pub connection: HostConnection,
}

/// `weft get …`.
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// The lattice's hosts: labels, liveness, the leader
    Hosts(HostOutput),
    /// What runs on each host (or on HOST): apps, versions, instance caps
    Inventory(InventoryArgs),
}

/// `weft get inventory`.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Only this host
    pub host: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub connection: HostConnection,
}

/// How a host joins a lattice.
#[derive(Debug, Args, Clone)]
pub struct LatticeArgs {
    /// Join the lattice over the NATS server at URL (JetStream enabled), e.g. nats://127.0.0.1:4222
    #[arg(long, value_name = "URL", env = "WEFT_NATS")]
    pub nats: Option<String>,
    /// The lattice's name: hosts with the same NATS and name form one lattice
    #[arg(
        long,
        default_value = "default",
        value_name = "NAME",
        requires = "nats"
    )]
    pub lattice: String,
    /// A label for placement rules, e.g. --label zone=a (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label, requires = "nats")]
    pub labels: Vec<(String, String)>,
    /// This host's id in the lattice [default: the one kept in the state dir, else a new one]
    #[arg(long, value_name = "ID", requires = "nats")]
    pub host_id: Option<String>,
    /// Serve every app's routes on this address instead of the manifests' (for several hosts
    /// on one machine)
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    #[command(flatten)]
    pub nats_auth: NatsAuthArgs,
}

/// How a host authenticates to the lattice's NATS server. Secrets come from files or the
/// environment, never from the command line, where `ps` would show them.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "NATS authentication")]
pub struct NatsAuthArgs {
    /// A .creds file (a user JWT and its NKey seed, as `nsc` writes it)
    #[arg(long, value_name = "FILE", env = "WEFT_NATS_CREDENTIALS")]
    pub nats_credentials: Option<PathBuf>,
    /// A file holding an NKey user seed (SU…)
    #[arg(long, value_name = "FILE", env = "WEFT_NATS_NKEY_FILE")]
    pub nats_nkey_file: Option<PathBuf>,
    /// The NATS user to connect as; its password comes from WEFT_NATS_PASSWORD or
    /// --nats-password-file
    #[arg(long, value_name = "NAME", env = "WEFT_NATS_USER")]
    pub nats_user: Option<String>,
    /// A file holding the NATS user's password
    #[arg(long, value_name = "FILE", env = "WEFT_NATS_PASSWORD_FILE")]
    pub nats_password_file: Option<PathBuf>,
    /// A file holding a NATS token (or set WEFT_NATS_TOKEN)
    #[arg(long, value_name = "FILE", env = "WEFT_NATS_TOKEN_FILE")]
    pub nats_token_file: Option<PathBuf>,
    /// A PEM file of the CA that signed the NATS server's certificate; TLS is then required
    #[arg(long, value_name = "FILE", env = "WEFT_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// A PEM client certificate for a server that verifies clients (with --nats-tls-key)
    #[arg(
        long,
        value_name = "FILE",
        env = "WEFT_NATS_TLS_CERT",
        requires = "nats_tls_key"
    )]
    pub nats_tls_cert: Option<PathBuf>,
    /// The client certificate's PEM private key
    #[arg(
        long,
        value_name = "FILE",
        env = "WEFT_NATS_TLS_KEY",
        requires = "nats_tls_cert"
    )]
    pub nats_tls_key: Option<PathBuf>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not a label; write KEY=VALUE")),
    }
}

/// `weft host`.
#[derive(Debug, Args)]
pub struct HostArgs {
    #[command(flatten)]
    pub lattice: LatticeArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// How a host serves, whichever way it was started.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Use on-demand instance allocation instead of the pooling allocator
    #[arg(long)]
    pub no_pooling: bool,
    /// On Ctrl-C or SIGTERM, how long requests in flight get to finish, e.g. 10s
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = weft_manifest::parse_duration)]
    pub shutdown_grace: std::time::Duration,
    /// Largest request body accepted, e.g. 64MiB
    #[arg(long, default_value = "64MiB", value_name = "SIZE", value_parser = weft_manifest::parse_size)]
    pub max_request_body: u64,
    /// Linear memory all guest instances together may hold, e.g. 8GiB; an instance that would
    /// go past it is refused with 503 and Retry-After [default: 3/4 of the machine's memory, or
    /// of the cgroup's limit]
    #[arg(long, value_name = "SIZE", value_parser = weft_manifest::parse_size)]
    pub memory_budget: Option<u64>,
    /// The most `limits.memory` a manifest may give one instance, at most 1GiB
    /// [default: 1GiB, or the memory budget when that is less]
    #[arg(long, value_name = "SIZE", value_parser = weft_manifest::parse_size)]
    pub max_memory: Option<u64>,
    /// The longest `limits.timeout` a manifest may give one call, at most 1h
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = weft_manifest::parse_duration)]
    pub max_timeout: std::time::Duration,
    /// The most instances of one component a manifest may ask for, at most 1000
    #[arg(long, default_value_t = weft_manifest::INSTANCES_CEILING, value_name = "N")]
    pub max_instances: u32,
    /// Refuse apps whose manifests say anything weft would not act on (what a deploy otherwise
    /// accepts with warnings: wadm fields and policies weft does not read, a wasmCloud
    /// provider's looser defaults)
    #[arg(long)]
    pub strict: bool,
    /// Versions of each app kept in the state store (the running one among them); older ones,
    /// and the components only they used, are deleted
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub keep_versions: u16,
    /// Also serve Prometheus metrics at http://ADDR/metrics (they are always at /metrics of
    /// the control API too)
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Serve /metrics without the control token; otherwise a scraper presents it as a bearer
    /// token (Prometheus: `authorization: { credentials_file: STATE_DIR/control-token }`)
    #[arg(long)]
    pub metrics_open: bool,
    /// Run only components signed by a key in --trusted-keys; others are refused before they
    /// are compiled
    #[arg(long, requires = "trusted_keys", help_heading = "Signatures")]
    pub require_signature: bool,
    /// The public keys --require-signature accepts: PEM blocks and `ssh-ed25519` lines
    #[arg(
        long,
        value_name = "FILE",
        requires = "require_signature",
        help_heading = "Signatures"
    )]
    pub trusted_keys: Option<PathBuf>,
    /// Keep no metrics (saves the counting on every request); /metrics then answers 404
    #[arg(long, conflicts_with_all = ["metrics_addr", "metrics_open"])]
    pub no_metrics: bool,
}

impl ServeArgs {
    /// The memory budget and the ceilings these flags set, refused when one is beyond what the
    /// runtime can honour.
    pub fn limits(&self) -> Result<(u64, weft_host::Ceilings), String> {
        let budget = self
            .memory_budget
            .unwrap_or_else(weft_host::default_memory_budget);
        let most = weft_host::Ceilings::default();
        let max_memory = self.max_memory.unwrap_or(most.max_memory.min(budget));
        let size = weft_host::ceilings::size;
        if max_memory > most.max_memory {
            return Err(format!(
                "--max-memory {} is more than one instance can have: at most {}",
                size(max_memory),
                size(most.max_memory)
            ));
        }
        if max_memory > budget {
            return Err(format!(
                "--max-memory {} is more than the --memory-budget of {}: no instance could use it",
                size(max_memory),
                size(budget)
            ));
        }
        if self.max_timeout > most.max_timeout {
            return Err(format!(
                "--max-timeout {:?} is longer than a call may run: at most {:?}",
                self.max_timeout, most.max_timeout
            ));
        }
        if self.max_instances == 0 || self.max_instances > most.max_instances {
            return Err(format!(
                "--max-instances {} is out of range: 1 to {}",
                self.max_instances, most.max_instances
            ));
        }
        Ok((
            budget,
            weft_host::Ceilings {
                max_memory,
                max_timeout: self.max_timeout,
                max_instances: self.max_instances,
            },
        ))
    }
}

/// `weft up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub lattice: LatticeArgs,
    /// App manifests to deploy once the host is up
    #[arg(value_name = "APP.yaml")]
    pub apps: Vec<PathBuf>,
    /// Build each component project before deploying it
    #[arg(long)]
    pub build: bool,
    /// Address of the control API
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR")]
    pub control_addr: SocketAddr,
    /// Let the control API listen on an address other machines can reach; it speaks plain
    /// HTTP, so its token then crosses the network in clear
    #[arg(long)]
    pub control_public: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `weft build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project directory
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// WIT world of a Python, JavaScript or Go project [default: the world named like the
    /// project in its own wit/, else wasi:http/proxy]
    #[arg(long)]
    pub world: Option<String>,
}

/// `weft app …`.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Deploy manifests (a new version replaces the running one with no failed request); several
    /// go in one batch: the host stores and switches on those that pass together
    #[command(after_help = "Examples:\n  weft app deploy app.yaml\n  weft app deploy apps/*.yaml")]
    Deploy(DeployArgs),
    /// List deployed apps
    List(HostOutput),
    /// Show one app: version, phase, components, routes, limits
    Status(NamedArgs),
    /// Stop serving an app and forget it
    Undeploy(NamedArgs),
    /// Check a manifest offline, as a deploy would: its fields, its links, and each built
    /// component's imports against what it is linked to
    #[command(after_help = "Example:\n  weft app validate app.yaml")]
    Validate(ValidateArgs),
}

/// `weft app validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The app manifest
    #[arg(value_name = "APP.yaml")]
    pub manifest: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `weft app deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The app manifests
    #[arg(value_name = "APP.yaml", required = true, num_args = 1..)]
    pub manifests: Vec<PathBuf>,
    /// Build each component project before deploying
    #[arg(long)]
    pub build: bool,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub connection: HostConnection,
}

/// A command on the running host whose only flag is its output format.
#[derive(Debug, Args)]
pub struct HostOutput {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub connection: HostConnection,
}

/// Output format.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Commands on one app.
#[derive(Debug, Args)]
pub struct NamedArgs {
    /// The app's name (metadata.name)
    pub name: String,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub connection: HostConnection,
}
