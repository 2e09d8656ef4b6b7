//! The machine the bench's figures were taken on: cores, CPU model, OS and kernel.

use serde::Serialize;

/// The machine the figures were taken on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// The CPU's model name.
    pub cpu_model: String,
    /// Distribution and kernel.
    pub os: String,
}

impl Machine {
    /// Reads `/proc/cpuinfo`, `/etc/os-release` and the kernel release; `unknown` where a
    /// file is missing (another OS).
    #[must_use]
    pub fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Self {
            cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            cpu_model: read("/proc/cpuinfo")
                .as_deref()
                .and_then(cpu_model)
                .unwrap_or_else(|| "unknown".into()),
            os: os_name(
                read("/etc/os-release").as_deref(),
                read("/proc/sys/kernel/osrelease").as_deref(),
            ),
        }
    }
}

/// The CPU model from `/proc/cpuinfo`: `model name` on x86, `Model` or `Hardware` on ARM.
#[must_use]
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "Hardware", "cpu model"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        })
}

/// `PRETTY_NAME` from `/etc/os-release` and the kernel release, e.g.
/// `Debian GNU/Linux 12 (bookworm), Linux 6.1.0`.
#[must_use]
pub fn os_name(os_release: Option<&str>, kernel: Option<&str>) -> String {
    let pretty = os_release.and_then(|text| {
        text.lines().find_map(|line| {
            let value = line.strip_prefix("PRETTY_NAME=")?;
            Some(value.trim().trim_matches('"').to_string())
        })
    });
    let kernel = kernel
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| format!("{} {k}", capitalised(std::env::consts::OS)));
    match (pretty, kernel) {
        (Some(p), Some(k)) => format!("{p}, {k}"),
        (Some(p), None) => p,
        (None, Some(k)) => k,
        (None, None) => std::env::consts::OS.to_string(),
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_is_read_on_x86_and_arm() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(cpu_model(x86).as_deref(), Some("AMD EPYC 7B13"));
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\n\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(
            cpu_model(arm).as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn os_name_joins_distribution_and_kernel() {
        let release = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n";
        let kernel = Some("6.1.0-18-amd64\n");
        let name = os_name(Some(release), kernel);
        assert!(
            name.starts_with("Debian GNU/Linux 12 (bookworm), "),
            "{name}"
        );
        assert!(name.ends_with(" 6.1.0-18-amd64"), "{name}");
        assert_eq!(
            os_name(Some(release), None),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_name(None, None), std::env::consts::OS);
    }
}
