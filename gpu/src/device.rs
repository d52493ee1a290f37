//! Finding a GPU without ever panicking, compiling kernels with NVRTC for
//! its compute capability, and caching the compiled kernels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaStream};
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::error::GpuError;
use crate::mode::GpuMode;

/// Whether the CUDA driver library can be loaded. cudarc panics on the
/// first driver call when it cannot, so this is checked before any.
pub fn driver_available() -> bool {
    // SAFETY: only tries to dlopen the library; no CUDA call is made.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether the NVRTC library can be loaded (the same panic applies).
pub fn nvrtc_available() -> bool {
    // SAFETY: as above.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles CUDA C `source` to PTX with NVRTC, for `compute_capability`
/// (`(9, 0)` for an H100) or NVRTC's default architecture. Needs NVRTC
/// only, not a GPU.
pub fn compile_ptx(
    kernel: &str,
    source: &str,
    compute_capability: Option<(i32, i32)>,
) -> Result<Ptx, GpuError> {
    if !nvrtc_available() {
        return Err(GpuError::NoCompiler(
            "libnvrtc was not found on the library path".to_string(),
        ));
    }
    let mut options = vec!["--std=c++17".to_string()];
    if let Some((major, minor)) = compute_capability {
        options.push(format!("--gpu-architecture=compute_{major}{minor}"));
    }
    let options = CompileOptions {
        options,
        name: Some(format!("{kernel}.cu")),
        ..CompileOptions::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(source, options).map_err(|e| GpuError::Compile {
        kernel: kernel.to_string(),
        log: e.to_string(),
    })
}

/// One GPU, its stream and the kernels compiled for it.
pub struct GpuDevice {
    context: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    compute_capability: (i32, i32),
    kernels: Mutex<HashMap<String, CudaFunction>>,
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuDevice")
            .field("name", &self.name)
            .field("compute_capability", &self.compute_capability)
            .finish()
    }
}

impl GpuDevice {
    /// The first GPU, as `mode` allows: `Off` gives `None`; `Auto` gives
    /// `None` (with the reason logged at debug level) where there is no
    /// driver, no device or no NVRTC; `Force` makes those errors.
    pub fn detect(mode: GpuMode) -> Result<Option<Arc<GpuDevice>>, GpuError> {
        match mode {
            GpuMode::Off => Ok(None),
            GpuMode::Auto => match Self::open(0) {
                Ok(device) => Ok(Some(device)),
                Err(e) => {
                    tracing::debug!("GPU path off: {e}");
                    Ok(None)
                }
            },
            GpuMode::Force => Self::open(0).map(Some),
        }
    }

    /// Opens GPU `ordinal`.
    pub fn open(ordinal: usize) -> Result<Arc<GpuDevice>, GpuError> {
        if !driver_available() {
            return Err(GpuError::NoDevice(
                "the NVIDIA driver library (libcuda) was not found".to_string(),
            ));
        }
        if !nvrtc_available() {
            return Err(GpuError::NoCompiler(
                "libnvrtc was not found on the library path".to_string(),
            ));
        }
        let count = CudaContext::device_count()
            .map_err(|e| GpuError::NoDevice(format!("the driver reports: {e}")))?;
        if count as usize <= ordinal {
            return Err(GpuError::NoDevice(format!(
                "{count} devices, none with ordinal {ordinal}"
            )));
        }
        let context = CudaContext::new(ordinal)?;
        let name = context.name()?;
        let compute_capability = context.compute_capability()?;
        let stream = context.default_stream();
        tracing::info!(
            "GPU {ordinal}: {name}, compute capability {}.{}",
            compute_capability.0,
            compute_capability.1
        );
        Ok(Arc::new(GpuDevice {
            context,
            stream,
            name,
            compute_capability,
            kernels: Mutex::new(HashMap::new()),
        }))
    }

    /// The device's name (`NVIDIA H100 80GB HBM3`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its compute capability, `(major, minor)`.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// The CUDA context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.context
    }

    /// The stream every operator of this device runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Number of streaming multiprocessors.
    pub fn multiprocessors(&self) -> Result<usize, GpuError> {
        let count = self.context.attribute(
            cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
        )?;
        Ok(count.max(1) as usize)
    }

    /// `(free, total)` device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize), GpuError> {
        Ok(self.context.mem_get_info()?)
    }

    /// Fails with [`GpuError::OutOfMemory`] unless `bytes` fit in free
    /// memory with 10% to spare, so callers fall back instead of failing.
    pub fn reserve(&self, bytes: usize) -> Result<(), GpuError> {
        let (free, _) = self.memory()?;
        if bytes.saturating_add(bytes / 10) > free {
            return Err(GpuError::OutOfMemory {
                needed: bytes,
                free,
            });
        }
        Ok(())
    }

    /// The kernel `name` from CUDA C `source`, compiled for this device on
    /// first use and cached (by name and source).
    pub fn kernel(&self, name: &str, source: &str) -> Result<CudaFunction, GpuError> {
        let key = format!("{name}\u{0}{source}");
        let mut kernels = self.kernels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kernel) = kernels.get(&key) {
            return Ok(kernel.clone());
        }
        let ptx = compile_ptx(name, source, Some(self.compute_capability))?;
        let module = self.context.load_module(ptx)?;
        let kernel = module.load_function(name)?;
        kernels.insert(key, kernel.clone());
        Ok(kernel)
    }
}
