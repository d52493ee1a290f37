//! Building guest modules from Rust sources, for Ember's tests and
//! examples: a `cdylib` of one source file that uses `ember-udf`, built
//! with a Rust compiler that has the `wasm32-unknown-unknown` target.
//!
//! The compiler is `EMBER_WASM_RUSTC` when set, else Debian's
//! `/usr/bin/rustc` where its wasm32 standard library is installed
//! (`scripts/install-wasm-guest-toolchain`), else `rustc` on the `PATH`
//! (after `rustup target add wasm32-unknown-unknown`). A user's own
//! library is an ordinary Cargo project instead (see `wasm/README.md`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Result, WasmError};

/// The guest SDK's source, in this repository.
pub const GUEST_SDK_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest/src/lib.rs");

/// The example libraries of `wasm/guest/examples`, by file stem.
pub fn example_source(stem: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest/examples")
        .join(format!("{stem}.rs"))
}

const TARGET: &str = "wasm32-unknown-unknown";

fn has_wasm_target(rustc: &str) -> bool {
    let Ok(output) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib")
        .is_dir()
}

/// The Rust compiler guests are built with, or why there is none.
pub fn guest_compiler() -> Result<String> {
    if let Ok(rustc) = std::env::var("EMBER_WASM_RUSTC")
        && !rustc.is_empty()
    {
        return Ok(rustc);
    }
    for candidate in ["/usr/bin/rustc", "rustc"] {
        if has_wasm_target(candidate) {
            return Ok(candidate.to_string());
        }
    }
    Err(WasmError::Io {
        what: format!(
            "no Rust compiler with the {TARGET} target: run scripts/install-wasm-guest-toolchain, \
             or `rustup target add {TARGET}`, or set EMBER_WASM_RUSTC"
        ),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

fn run(rustc: &str, args: &[&str], what: &str) -> Result<()> {
    let output = Command::new(rustc)
        .args(args)
        .output()
        .map_err(|source| WasmError::Io {
            what: format!("cannot run {rustc} to build {what}"),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(WasmError::Io {
        what: format!(
            "{rustc} could not build {what}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        source: std::io::Error::other("compile error"),
    })
}

/// Builds the library whose source is `source` (one file that calls
/// `ember_udf::library!`) into `out_dir`, and returns the module's path.
pub fn build_guest(source: &Path, out_dir: &Path) -> Result<PathBuf> {
    // One build at a time in a process: builds share the SDK's rlib.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _building = BUILDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let rustc = guest_compiler()?;
    std::fs::create_dir_all(out_dir).map_err(|e| WasmError::Io {
        what: format!("cannot create {}", out_dir.display()),
        source: e,
    })?;
    let sdk = out_dir.join("libember_udf.rlib");
    let path = |p: &Path| p.to_string_lossy().into_owned();
    if !sdk.exists() {
        run(
            &rustc,
            &[
                "--edition=2021",
                "-O",
                "--target",
                TARGET,
                "--crate-type=rlib",
                "--crate-name=ember_udf",
                GUEST_SDK_SOURCE,
                "-o",
                &path(&sdk),
            ],
            "the guest SDK ember-udf",
        )?;
    }
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "library".into());
    let module = out_dir.join(format!("{stem}.wasm"));
    run(
        &rustc,
        &[
            "--edition=2021",
            "-O",
            "-C",
            "strip=debuginfo",
            "--target",
            TARGET,
            "--crate-type=cdylib",
            "--extern",
            &format!("ember_udf={}", path(&sdk)),
            &path(source),
            "-o",
            &path(&module),
        ],
        &format!("the library {}", source.display()),
    )?;
    Ok(module)
}
