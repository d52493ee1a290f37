//! Running a module: one wasmtime engine per process, each module compiled
//! once, instances pooled and reused across calls, every call bounded in
//! time (epoch interruption) and memory (a resource limiter).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, Instance, Memory, Module, ResourceLimiter, Store, Trap, TypedFunc};

use crate::error::{Result, WasmError};
use crate::manifest::{FunctionDecl, parse_line};

/// The version of the boundary this host speaks (`ember_udf::ABI_VERSION`).
pub const ABI_VERSION: i32 = 1;

/// How often the engine's epoch advances: the grain of the time limit.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// What one call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The most linear memory the module may hold, in MiB.
    pub memory_mib: u64,
    /// The longest one call (a batch) may run, in milliseconds.
    pub time_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let settings = ember_core::EmberConfig::default();
        Self {
            memory_mib: settings.wasm_memory_limit_mib,
            time_ms: settings.wasm_time_limit_ms,
        }
    }
}

impl Limits {
    fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    fn deadline_ticks(&self) -> u64 {
        (self.time_ms / EPOCH_TICK.as_millis() as u64).max(1) + 1
    }
}

/// The process's engine, whose epoch a background thread advances.
fn engine() -> Result<&'static Engine> {
    static ENGINE: OnceLock<std::result::Result<Engine, String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| e.to_string())?;
        let ticking = engine.clone();
        std::thread::Builder::new()
            .name("ember-wasm-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(engine)
    });
    engine.as_ref().map_err(|reason| WasmError::InvalidModule {
        module: "(engine)".into(),
        reason: reason.clone(),
    })
}

/// The memory bound of one store, which notes when it refused to grow.
struct CallLimiter {
    memory_bytes: usize,
    refused: bool,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// One instance of a module, with the exports of the boundary.
struct Instantiated {
    store: Store<CallLimiter>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    free: TypedFunc<(i32, i32), ()>,
    call: TypedFunc<(i32, i32, i32), i64>,
    manifest: TypedFunc<(), i64>,
    last_panic: Option<TypedFunc<(), i64>>,
}

/// The exports every library has.
const EXPORTS: [&str; 5] = [
    "memory",
    "ember_alloc",
    "ember_free",
    "ember_call",
    "ember_manifest",
];

impl Instantiated {
    fn new(module: &Module, limits: Limits, label: &str) -> Result<Self> {
        let not_a_library = |reason: String| WasmError::NotALibrary {
            module: label.to_string(),
            reason,
        };
        if let Some(import) = module.imports().next() {
            return Err(not_a_library(format!(
                "it imports `{}::{}`, and the sandbox gives a module nothing to import",
                import.module(),
                import.name()
            )));
        }
        let mut store = Store::new(
            module.engine(),
            CallLimiter {
                memory_bytes: limits.memory_bytes(),
                refused: false,
            },
        );
        store.limiter(|limiter| limiter);
        store.set_epoch_deadline(limits.deadline_ticks());
        let instance = Instance::new(&mut store, module, &[])
            .map_err(|e| not_a_library(format!("it cannot start: {e}")))?;
        let memory = instance
            .get_memory(&mut store, EXPORTS[0])
            .ok_or_else(|| not_a_library("it exports no `memory`".into()))?;
        let missing = |name: &str, e: wasmtime::Error| {
            not_a_library(format!("its export `{name}` is missing or mistyped: {e}"))
        };
        let alloc = instance
            .get_typed_func(&mut store, EXPORTS[1])
            .map_err(|e| missing(EXPORTS[1], e))?;
        let free = instance
            .get_typed_func(&mut store, EXPORTS[2])
            .map_err(|e| missing(EXPORTS[2], e))?;
        let call = instance
            .get_typed_func(&mut store, EXPORTS[3])
            .map_err(|e| missing(EXPORTS[3], e))?;
        let manifest = instance
            .get_typed_func(&mut store, EXPORTS[4])
            .map_err(|e| missing(EXPORTS[4], e))?;
        let last_panic = instance.get_typed_func(&mut store, "ember_last_panic").ok();
        // A module of another version of the layout is refused, not misread.
        if let Ok(version) = instance.get_typed_func::<(), i32>(&mut store, "ember_abi_version") {
            let version = version
                .call(&mut store, ())
                .map_err(|e| not_a_library(format!("its ABI version cannot be read: {e}")))?;
            if version != ABI_VERSION {
                return Err(not_a_library(format!(
                    "it speaks version {version} of the boundary, this Ember version {ABI_VERSION} \
                     (rebuild it with the ember-udf of this Ember)"
                )));
            }
        }
        Ok(Self {
            store,
            memory,
            alloc,
            free,
            call,
            manifest,
            last_panic,
        })
    }

    /// Copies `input` in, runs `ember_call`, copies the result out.
    fn invoke(&mut self, index: usize, input: &[u8]) -> wasmtime::Result<Vec<u8>> {
        let len = i32::try_from(input.len())
            .map_err(|_| wasmtime::Error::msg("the batch is over 2 GiB"))?;
        let ptr = self.alloc.call(&mut self.store, len)?;
        self.memory
            .write(&mut self.store, ptr as u32 as usize, input)?;
        let packed = self.call.call(&mut self.store, (index as i32, ptr, len))?;
        self.free.call(&mut self.store, (ptr, len))?;
        self.take_buffer(packed)
    }

    /// Reads and gives back a buffer the module handed out as
    /// `ptr << 32 | len`.
    fn take_buffer(&mut self, packed: i64) -> wasmtime::Result<Vec<u8>> {
        let (ptr, len) = ((packed as u64 >> 32) as u32, packed as u64 as u32);
        let mut out = vec![0u8; len as usize];
        self.memory
            .read(&self.store, ptr as usize, &mut out)
            .map_err(|_| wasmtime::Error::msg("the result lies outside the module's memory"))?;
        self.free.call(&mut self.store, (ptr as i32, len as i32))?;
        Ok(out)
    }

    /// The message of the panic that stopped the last call, if the module
    /// kept one.
    fn panic_message(&mut self, limits: Limits) -> Option<String> {
        let last_panic = self.last_panic.clone()?;
        self.store.set_epoch_deadline(limits.deadline_ticks());
        let packed = last_panic.call(&mut self.store, ()).ok()?;
        let bytes = self.take_buffer(packed).ok()?;
        let message = String::from_utf8_lossy(&bytes).trim().to_string();
        (!message.is_empty()).then_some(message)
    }
}

/// A module compiled for this process, with its manifest and a pool of
/// instances.
pub struct CompiledModule {
    hash: String,
    module: Module,
    limits: Limits,
    functions: Vec<FunctionDecl>,
    idle: Mutex<Vec<Instantiated>>,
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("hash", &self.hash)
            .field("functions", &self.functions)
            .finish_non_exhaustive()
    }
}

/// The most idle instances a module keeps: about one per task slot.
fn max_idle() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 2)
}

impl CompiledModule {
    /// Compiles `bytes` (whose SHA-256 is `hash`) and reads its manifest.
    pub fn compile(hash: &str, bytes: &[u8], limits: Limits) -> Result<Arc<Self>> {
        let label = format!("sha256:{}", &hash[..hash.len().min(12)]);
        let module = Module::new(engine()?, bytes).map_err(|e| WasmError::InvalidModule {
            module: label.clone(),
            reason: format!("{e:#}"),
        })?;
        let mut first = Instantiated::new(&module, limits, &label)?;
        let manifest = read_manifest(&mut first, &label)?;
        let functions = manifest
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(index, line)| {
                parse_line(index, line).map_err(|reason| WasmError::Manifest {
                    module: label.clone(),
                    line: line.to_string(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Self {
            hash: hash.to_string(),
            module,
            limits,
            functions,
            idle: Mutex::new(vec![first]),
        }))
    }

    /// The module's SHA-256, in hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The limits its calls run under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Its functions, as its manifest declares them.
    pub fn functions(&self) -> &[FunctionDecl] {
        &self.functions
    }

    /// Runs `function` over the encoded batch `input`, giving the encoded
    /// result batch.
    pub fn call(&self, function: &FunctionDecl, input: &[u8]) -> Result<Vec<u8>> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut instance = match idle {
            Some(instance) => instance,
            None => Instantiated::new(&self.module, self.limits, &self.hash)?,
        };
        instance.store.data_mut().refused = false;
        instance
            .store
            .set_epoch_deadline(self.limits.deadline_ticks());
        match instance.invoke(function.index, input) {
            Ok(result) => {
                if let Ok(mut idle) = self.idle.lock()
                    && idle.len() < max_idle()
                {
                    idle.push(instance);
                }
                decode_status(&function.name, result)
            }
            // A failed instance is dropped, never reused.
            Err(error) => Err(self.explain(&mut instance, &function.name, error)),
        }
    }

    fn explain(
        &self,
        instance: &mut Instantiated,
        function: &str,
        error: wasmtime::Error,
    ) -> WasmError {
        let function = function.to_string();
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return WasmError::TimeLimit {
                function,
                limit_ms: self.limits.time_ms,
            };
        }
        if instance.store.data().refused {
            return WasmError::MemoryLimit {
                function,
                limit_mib: self.limits.memory_mib,
            };
        }
        let trap = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        let reason = match instance.panic_message(self.limits) {
            Some(message) => format!("{message} ({trap})"),
            None => trap,
        };
        WasmError::Trapped { function, reason }
    }
}

fn read_manifest(instance: &mut Instantiated, label: &str) -> Result<String> {
    let not_a_library = |reason: String| WasmError::NotALibrary {
        module: label.to_string(),
        reason,
    };
    let packed = instance
        .manifest
        .clone()
        .call(&mut instance.store, ())
        .map_err(|e| not_a_library(format!("its manifest cannot be read: {e:#}")))?;
    let bytes = instance
        .take_buffer(packed)
        .map_err(|e| not_a_library(format!("its manifest cannot be read: {e:#}")))?;
    String::from_utf8(bytes).map_err(|_| not_a_library("its manifest is not UTF-8".into()))
}

/// A result buffer: status 0 and a batch, or status 1 and a message.
fn decode_status(function: &str, mut result: Vec<u8>) -> Result<Vec<u8>> {
    match result.first() {
        Some(0) => {
            result.remove(0);
            Ok(result)
        }
        Some(1) => Err(WasmError::Trapped {
            function: function.to_string(),
            reason: String::from_utf8_lossy(&result[1..]).into_owned(),
        }),
        _ => Err(WasmError::BadResult {
            function: function.to_string(),
            reason: "its result does not start with a status byte".into(),
        }),
    }
}
