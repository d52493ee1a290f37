//! `ember.gpu`: whether operators may, must or must not use a GPU.

use std::str::FromStr;

/// The `ember.gpu` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuMode {
    /// Never use a GPU.
    Off,
    /// Use a GPU where one is present and the operator is supported; run on
    /// the CPU otherwise (the default).
    #[default]
    Auto,
    /// Use a GPU; a missing GPU or compiler is an error (for device runs,
    /// so that a silent CPU fallback cannot pass for a GPU result).
    Force,
}

impl FromStr for GpuMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "false" => Ok(GpuMode::Off),
            "auto" => Ok(GpuMode::Auto),
            "force" | "on" | "true" => Ok(GpuMode::Force),
            other => Err(format!(
                "invalid ember.gpu value `{other}`: expected off, auto or force"
            )),
        }
    }
}

impl std::fmt::Display for GpuMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GpuMode::Off => "off",
            GpuMode::Auto => "auto",
            GpuMode::Force => "force",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_and_refuses_others() {
        assert_eq!("off".parse(), Ok(GpuMode::Off));
        assert_eq!(" AUTO ".parse(), Ok(GpuMode::Auto));
        assert_eq!("force".parse(), Ok(GpuMode::Force));
        let err = "sometimes".parse::<GpuMode>().unwrap_err();
        assert!(
            err.contains("sometimes") && err.contains("off, auto or force"),
            "{err}"
        );
        assert_eq!(GpuMode::default(), GpuMode::Auto);
    }
}
