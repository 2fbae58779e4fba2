//! What the numbers were measured on, read at run time: the machine changes from day to day,
//! so a throughput means nothing without the CPU and the instruction sets it offered.

/// Instruction-set extensions that decide which kernels can run (x86 and Arm names as the
/// Linux kernel spells them in /proc/cpuinfo).
const SIMD_FLAGS: &[&str] = &[
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512dq",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
    "sve2",
];

/// The CPU model and the SIMD extensions it reports, or `None` where /proc/cpuinfo is missing
/// (not Linux) or names no model.
pub fn cpu() -> Option<(String, Vec<String>)> {
    parse_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

fn parse_cpuinfo(text: &str) -> Option<(String, Vec<String>)> {
    let field = |names: &[&str]| {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            names
                .contains(&key.trim())
                .then(|| value.trim().to_string())
        })
    };
    let model = field(&["model name", "Model", "cpu model", "Hardware"])?;
    let flags = field(&["flags", "Features"]).unwrap_or_default();
    let have: Vec<&str> = flags.split_whitespace().collect();
    let simd = SIMD_FLAGS
        .iter()
        .filter(|f| have.contains(f))
        .map(|f| f.to_string())
        .collect();
    Some((model, simd))
}

/// The number of CPUs this process may run on.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Peak resident memory of this process so far in MiB (`VmHWM`), or `None` off Linux.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let kib: f64 = parts.next()?.parse().ok()?;
    (parts.next() == Some("kB")).then_some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_flags_and_peak_memory() {
        let text = "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu sse4_2 avx2 fma avx512f avx512_vnni amx_tile\n\nprocessor\t: 1\nmodel name\t: Some Xeon\n";
        let (model, simd) = parse_cpuinfo(text).unwrap();
        assert_eq!(model, "Some Xeon");
        assert_eq!(
            simd,
            [
                "sse4_2",
                "avx2",
                "fma",
                "avx512f",
                "avx512_vnni",
                "amx_tile"
            ]
        );
        assert_eq!(parse_cpuinfo("processor: 0\n"), None);
        assert_eq!(
            parse_vm_hwm("VmPeak:\t 1 kB\nVmHWM:\t  2048 kB\n"),
            Some(2.0)
        );
        assert_eq!(parse_vm_hwm("VmHWM: lots\n"), None);
        let live = peak_rss_mb();
        if cfg!(target_os = "linux") {
            assert!(live.is_some_and(|mb| mb > 1.0), "{live:?}");
        }
    }
}
