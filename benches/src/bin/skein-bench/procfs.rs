//! What Linux says about a process and a directory: CPU time and memory (`/proc/PID/stat`,
//! `/proc/PID/status`), open file descriptors (`/proc/PID/fd`), the load average, and the disk
//! space a directory tree holds. Every reader returns `None` (or skips) what it cannot read:
//! a process may exit and a file vanish while they look.

use std::path::Path;

use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat`'s CPU times.
fn clock_ticks_per_sec() -> Option<f64> {
    // SAFETY: sysconf takes no pointers and has no side effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

/// User + system CPU seconds of a process, from `/proc/PID/stat`.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(parse_cpu_ticks(&stat)? as f64 / clock_ticks_per_sec()?)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2) is
/// in parentheses and may hold spaces, so fields are counted after the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time used over a wall-clock window, as a percentage of one core (200 = two cores busy).
pub fn cpu_percent_of_core(cpu_secs: f64, window_secs: f64) -> f64 {
    if window_secs <= 0.0 {
        return 0.0;
    }
    cpu_secs / window_secs * 100.0
}

/// The memory of a process, from `/proc/PID/status`, KiB (and its thread count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now, mapped file pages included.
    pub rss_kib: u64,
    /// `RssAnon`: the process's own resident memory, without mapped file pages.
    pub rss_anon_kib: u64,
    /// `VmHWM`: the peak of `VmRSS`.
    pub rss_peak_kib: u64,
    pub threads: u64,
}

/// The memory of a process, or `None` when it has exited.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_memory(&status)
}

fn parse_memory(status: &str) -> Option<Memory> {
    Some(Memory {
        rss_kib: parse_status_number(status, "VmRSS:")?,
        rss_anon_kib: parse_status_number(status, "RssAnon:").unwrap_or(0),
        rss_peak_kib: parse_status_number(status, "VmHWM:").unwrap_or(0),
        threads: parse_status_number(status, "Threads:").unwrap_or(0),
    })
}

/// `VmHWM` of a process, KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    memory(pid).map(|m| m.rss_peak_kib)
}

/// `RssAnon` of a process, KiB: its own memory, without the file pages it maps (a node reads
/// its log segments through memory maps, and those pages, which the kernel can drop, count in
/// `VmRSS` and `VmHWM`).
pub fn rss_anon_kib(pid: u32) -> Option<u64> {
    memory(pid).map(|m| m.rss_anon_kib)
}

/// The number after `field` in `/proc/PID/status` (`VmRSS:\t  1234 kB` gives 1234).
fn parse_status_number(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Open file descriptors of a process: the entries of `/proc/PID/fd`.
pub fn open_fds(pid: u32) -> Option<u64> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.filter(Result::is_ok).count() as u64)
}

/// The 1, 5 and 15 minute load averages of the machine.
pub fn load_average() -> Option<[f64; 3]> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut f = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([f.next()??, f.next()??, f.next()??])
}

/// Disk space a directory tree holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Blocks allocated (`st_blocks` x 512): what the tree takes from the disk. Preallocated
    /// space counts; holes in sparse files do not.
    pub allocated_bytes: u64,
    /// Sum of file sizes (`st_size`).
    pub apparent_bytes: u64,
    pub files: u64,
    pub dirs: u64,
}

impl DiskUsage {
    fn add_entry(&mut self, blocks: u64, len: u64, is_dir: bool) {
        self.allocated_bytes += blocks * 512;
        if is_dir {
            self.dirs += 1;
        } else {
            self.files += 1;
            self.apparent_bytes += len;
        }
    }
}

/// Disk space under `root` (like `du -s --block-size=1`), symlinks not followed. Entries that
/// vanish during the walk are skipped.
pub fn disk_usage(root: &Path) -> DiskUsage {
    use std::os::unix::fs::MetadataExt as _;
    let mut usage = DiskUsage::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        usage.add_entry(meta.blocks(), meta.len(), true);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                usage.add_entry(meta.blocks(), meta.len(), false);
            }
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "42 (skein node) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(280));
        assert_eq!(parse_cpu_ticks("42 (x"), None);
        assert_eq!(parse_cpu_ticks("42 (a) b) S 1"), None);
        assert!(process_cpu_secs(std::process::id()).is_some());
    }

    #[test]
    fn cpu_is_a_share_of_one_core() {
        assert_eq!(cpu_percent_of_core(1.5, 30.0), 5.0);
        assert_eq!(cpu_percent_of_core(60.0, 30.0), 200.0);
        assert_eq!(cpu_percent_of_core(1.0, 0.0), 0.0);
    }

    #[test]
    fn memory_is_read_from_proc_status() {
        let status = "Name:\tskein-node\nVmPeak:\t  999 kB\nVmHWM:\t   123456 kB\n\
                      VmRSS:\t 100000 kB\nRssAnon:\t   4321 kB\nThreads:\t17\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kib: 100000,
                rss_anon_kib: 4321,
                rss_peak_kib: 123456,
                threads: 17,
            })
        );
        // VmRSS is what makes a status usable (a zombie has none).
        assert_eq!(parse_memory("Name: x\nVmHWM:\t5 kB\n"), None);
        let me = memory(std::process::id()).expect("own status");
        assert!(me.rss_kib > 0 && me.rss_peak_kib >= me.rss_kib && me.threads >= 1);
        assert!(rss_anon_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(vm_hwm_kib(std::process::id()).is_some_and(|k| k > 0));
    }

    #[test]
    fn open_fds_counts_the_files_we_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files: Vec<std::fs::File> = (0..50)
            .map(|i| std::fs::File::create(dir.path().join(format!("f{i}"))).expect("create"))
            .collect();
        let n = open_fds(std::process::id()).expect("own fds");
        assert!(n >= files.len() as u64, "{n}");
        assert_eq!(open_fds(u32::MAX), None);
    }

    #[test]
    fn load_average_is_three_numbers() {
        assert_eq!(
            parse_loadavg("0.52 1.07 2.00 2/345 6789\n"),
            Some([0.52, 1.07, 2.0])
        );
        assert_eq!(parse_loadavg("0.5 x 1"), None);
        assert_eq!(parse_loadavg(""), None);
        assert!(load_average().is_some());
    }

    #[test]
    fn disk_usage_counts_allocated_blocks_not_holes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/data"), vec![7u8; 64 * 1024]).expect("write");
        let sparse = std::fs::File::create(dir.path().join("sparse")).expect("create");
        sparse.set_len(64 << 20).expect("set_len");
        sparse.sync_all().expect("sync");
        let u = disk_usage(dir.path());
        assert_eq!((u.files, u.dirs), (2, 2));
        assert_eq!(u.apparent_bytes, 64 * 1024 + (64 << 20));
        assert!(u.allocated_bytes >= 64 * 1024, "{u:?}");
        assert!(u.allocated_bytes < 16 << 20, "the hole counted: {u:?}");
        assert_eq!(
            disk_usage(&dir.path().join("missing")),
            DiskUsage::default()
        );
    }
}
