//! What Ember's example jobs share: their command line (`--master URL`,
//! else `EMBER_MASTER`, else embedded) and how they report errors.

use ember::EmberContext;

/// Arguments every example takes, and the rest.
#[derive(Debug, Default)]
pub struct JobArgs {
    /// `--master URL` (`local`, `df://host:port`), if given.
    pub master: Option<String>,
    /// `--name value` options, in order.
    pub options: Vec<(String, String)>,
    /// Everything else, in order.
    pub positional: Vec<String>,
}

impl JobArgs {
    /// Parses `args` (without the program name); every `--name` takes a
    /// value.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<JobArgs, String> {
        let mut parsed = JobArgs::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if let Some(name) = arg.strip_prefix("--") {
                let value = args
                    .next()
                    .ok_or_else(|| format!("--{name} needs a value"))?;
                if name == "master" {
                    parsed.master = Some(value);
                } else {
                    parsed.options.push((name.to_string(), value));
                }
            } else {
                parsed.positional.push(arg);
            }
        }
        Ok(parsed)
    }

    /// The value of `--name`, if given.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The context for `--master`, else `EMBER_MASTER`, else embedded.
    pub async fn context(&self) -> ember::Result<EmberContext> {
        match &self.master {
            Some(master) => EmberContext::from_master(master).await,
            None => EmberContext::from_env().await,
        }
    }
}

/// Runs `job` and exits: 0 on success, 2 on a usage error, 1 with one
/// `error: …` line otherwise.
pub fn run_job<F, Fut>(usage: &str, job: F)
where
    F: FnOnce(JobArgs) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let args = match JobArgs::parse(std::env::args().skip(1)) {
        Ok(args) if !args.options.iter().any(|(n, _)| n == "help") => args,
        Ok(_) => {
            println!("{usage}");
            std::process::exit(0);
        }
        Err(message) => {
            eprintln!("error: {message}\n{usage}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(message) = runtime.block_on(job(args)) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
