//! Where the cgroup hierarchies are and which group this process is in. Parsing is pure
//! (tested on text); `Mounts::read` does the I/O.

use std::path::{Path, PathBuf};

/// A cgroup v1 hierarchy: its mount point, its controllers, and this process's group in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
    pub own: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mounts {
    pub v1: Vec<V1Hierarchy>,
    /// (mount point, this process's group) of the v2 hierarchy.
    pub v2: Option<(PathBuf, String)>,
}

impl Mounts {
    pub fn read() -> Mounts {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Self::parse(&mountinfo, &cgroup)
    }

    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Mounts {
        let mut m = Mounts::default();
        // /proc/self/cgroup: "hier-id:controllers:path"; v2 is "0::path".
        let own: Vec<(Vec<String>, String)> = proc_cgroup
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ':');
                let _id = it.next()?;
                let ctrls = it.next()?;
                let path = it.next()?;
                Some((
                    ctrls
                        .split(',')
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .collect(),
                    path.to_string(),
                ))
            })
            .collect();
        for line in mountinfo.lines() {
            // ... mount-point ... - fstype source super-options
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = left.split(' ').collect();
            let rfields: Vec<&str> = right.split(' ').collect();
            if fields.len() < 5 || rfields.is_empty() {
                continue;
            }
            let mount = PathBuf::from(unescape(fields[4]));
            match rfields[0] {
                "cgroup2" => {
                    let own_path = own
                        .iter()
                        .find(|(c, _)| c.is_empty())
                        .map(|(_, p)| p.clone())
                        .unwrap_or_else(|| "/".into());
                    m.v2 = Some((mount, own_path));
                }
                "cgroup" => {
                    let opts = rfields.get(2).copied().unwrap_or("");
                    let controllers: Vec<String> = opts
                        .split(',')
                        .filter(|o| ["memory", "cpu", "cpuacct", "pids", "freezer"].contains(o))
                        .map(String::from)
                        .collect();
                    if controllers.is_empty() {
                        continue;
                    }
                    let own_path = own
                        .iter()
                        .find(|(c, _)| controllers.iter().all(|k| c.contains(k)))
                        .map(|(_, p)| p.clone())
                        .unwrap_or_else(|| "/".into());
                    m.v1.push(V1Hierarchy {
                        mount,
                        controllers,
                        own: own_path,
                    });
                }
                _ => {}
            }
        }
        m
    }

    /// The v1 hierarchy holding `controller`.
    pub fn v1_for(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

impl V1Hierarchy {
    /// This process's group directory.
    pub fn own_dir(&self) -> PathBuf {
        join_cgroup(&self.mount, &self.own)
    }
}

pub fn join_cgroup(mount: &Path, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        mount.to_path_buf()
    } else {
        mount.join(rel)
    }
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key value` lines (memory.stat, memory.events, cpu.stat, memory.oom_control).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
35 30 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
";
    const CGROUP: &str = "9:name=systemd:/\n4:memory:/process_api/abc\n3:cpu,cpuacct:/user\n2:freezer:/\n0::/user.slice/x.scope\n";

    #[test]
    fn hybrid_hierarchies() {
        let m = Mounts::parse(MOUNTINFO, CGROUP);
        assert_eq!(
            m.v2,
            Some((
                PathBuf::from("/sys/fs/cgroup/unified"),
                "/user.slice/x.scope".into()
            ))
        );
        let mem = m.v1_for("memory").unwrap();
        assert_eq!(
            mem.own_dir(),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(
            m.v1_for("cpuacct").unwrap().own_dir(),
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/user")
        );
        assert_eq!(m.v1_for("freezer").unwrap().own, "/");
        assert!(m.v1_for("pids").is_none());
    }

    #[test]
    fn keyed_values() {
        assert_eq!(
            keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
        assert_eq!(keyed("usage_usec 100\n", "oom_kill"), None);
    }
}
