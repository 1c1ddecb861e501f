//! Network namespaces, the bridge and veth pairs of one run: their names (so
//! that parallel runs do not collide and leftovers are recognisable), the `ip`
//! commands that create them, and the cleanup of this run and of dead runs.
//!
//! Names, for run id `R` (the harness's pid in hex) and member `N`:
//! namespace `lsj-R-N`, bridge `lsjR` (10.77.S.254/24), host end of the veth
//! `lsjRvN`; the member's end is `eth0` at 10.77.S.N inside its namespace.

use std::process::{Command, Stdio};

/// The names and addresses of one run's network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Lower-case hex of the harness's pid.
    pub run_id: String,
    /// The third octet of the run's 10.77.S.0/24 subnet.
    pub subnet: u8,
}

impl Names {
    /// The names of the run of the process `pid`, on subnet `subnet`.
    pub fn new(pid: u32, subnet: u8) -> Names {
        Names { run_id: format!("{pid:x}"), subnet }
    }

    /// The member's network namespace.
    pub fn netns(&self, member: u64) -> String {
        format!("lsj-{}-{member}", self.run_id)
    }

    /// The bridge in the root namespace.
    pub fn bridge(&self) -> String {
        format!("lsj{}", self.run_id)
    }

    /// The root-namespace end of the member's veth pair.
    pub fn veth(&self, member: u64) -> String {
        format!("lsj{}v{member}", self.run_id)
    }

    /// The member's address.
    pub fn member_ip(&self, member: u64) -> String {
        format!("10.77.{}.{member}", self.subnet)
    }

    /// The bridge's address, from which clients talk to members.
    pub fn bridge_ip(&self) -> String {
        format!("10.77.{}.254", self.subnet)
    }

    /// The `ip` argument lists that build the network of `members` members.
    pub fn setup_commands(&self, members: u64) -> Vec<Vec<String>> {
        let bridge = self.bridge();
        let mut commands = vec![
            args(&["link", "add", &bridge, "type", "bridge"]),
            args(&["addr", "add", &format!("{}/24", self.bridge_ip()), "dev", &bridge]),
            args(&["link", "set", &bridge, "up"]),
        ];
        for member in 1..=members {
            let netns = self.netns(member);
            let veth = self.veth(member);
            commands.push(args(&["netns", "add", &netns]));
            commands.push(args(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns]));
            commands.push(args(&["link", "set", &veth, "master", &bridge, "up"]));
            let address = format!("{}/24", self.member_ip(member));
            commands.push(args(&["-n", &netns, "addr", "add", &address, "dev", "eth0"]));
            commands.push(args(&["-n", &netns, "link", "set", "eth0", "up"]));
            commands.push(args(&["-n", &netns, "link", "set", "lo", "up"]));
        }
        commands
    }
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

/// The run id and member of a namespace named like ours (`lsj-<hex>-<n>`).
pub fn parse_netns_name(name: &str) -> Option<(String, u64)> {
    let rest = name.strip_prefix("lsj-")?;
    let (run_id, member) = rest.split_once('-')?;
    if run_id.is_empty() || !run_id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    let member: u64 = member.parse().ok()?;
    Some((run_id.to_owned(), member))
}

/// The run id of a bridge named like ours (`lsj<hex>`).
pub fn parse_bridge_name(name: &str) -> Option<String> {
    let run_id = name.strip_prefix("lsj")?;
    if run_id.is_empty() || !run_id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    Some(run_id.to_owned())
}

/// Whether the run `run_id` is still going: its pid is alive and is a
/// `lockstep-jepsen` process.
pub fn run_is_alive(run_id: &str) -> bool {
    let Ok(pid) = u32::from_str_radix(run_id, 16) else { return false };
    if pid == std::process::id() {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "lockstep-jepsen")
}

/// Runs `ip ARGS`; an error carries its stderr.
pub fn ip(arguments: &[String]) -> Result<(), String> {
    run_quiet("ip", arguments)
}

/// Runs a command with output captured; an error says what failed.
pub fn run_quiet(program: &str, arguments: &[String]) -> Result<(), String> {
    let output = Command::new(program)
        .args(arguments)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed: {}", arguments.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// The network namespaces that exist now.
pub fn list_netns() -> Vec<String> {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else { return Vec::new() };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The bridges that exist now.
pub fn list_bridges() -> Vec<String> {
    let Ok(output) = Command::new("ip").args(["-o", "link", "show", "type", "bridge"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split(": ").nth(1).map(|name| name.split('@').next().unwrap_or(name).to_owned()))
        .collect()
}

/// Kills every process in a namespace and deletes it (its veth goes with it).
pub fn delete_netns(name: &str) {
    if let Ok(output) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            // SIGCONT first: a stopped process does not die of SIGKILL until resumed on some kernels.
            let _ = Command::new("kill").args(["-CONT", pid]).status();
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = ip(&args(&["netns", "del", name]));
}

/// Removes what this run created, and what dead runs left behind. Returns
/// what was removed.
pub fn cleanup(own_run_id: Option<&str>) -> Vec<String> {
    let mut removed = Vec::new();
    let stale = |run_id: &str| Some(run_id) == own_run_id || !run_is_alive(run_id);
    for name in list_netns() {
        if parse_netns_name(&name).is_some_and(|(run_id, _)| stale(&run_id)) {
            delete_netns(&name);
            removed.push(format!("netns {name}"));
        }
    }
    for mount in crate::disk::stale_mounts(stale) {
        crate::disk::unmount(&mount);
        removed.push(format!("tmpfs {}", mount.display()));
    }
    for name in list_bridges() {
        if parse_bridge_name(&name).is_some_and(|run_id| stale(&run_id)) {
            let _ = ip(&args(&["link", "del", &name]));
            removed.push(format!("bridge {name}"));
        }
    }
    removed
}

/// A free 10.77.S.0/24 subnet for this run, preferring one derived from the pid.
pub fn free_subnet(pid: u32) -> u8 {
    let used = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    let first = (pid % 200) as u8 + 20;
    (0..250u16)
        .map(|offset| ((u16::from(first) + offset) % 250 + 1) as u8)
        .find(|subnet| !used.contains(&format!("10.77.{subnet}.")))
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_limits_and_parse_back() {
        let names = Names::new(4_194_303, 42);
        assert_eq!(names.run_id, "3fffff");
        assert!(names.bridge().len() <= 15);
        assert!(names.veth(9).len() <= 15);
        assert_eq!(parse_netns_name(&names.netns(3)), Some(("3fffff".to_owned(), 3)));
        assert_eq!(parse_bridge_name(&names.bridge()), Some("3fffff".to_owned()));
        assert_eq!(names.member_ip(2), "10.77.42.2");
        assert_eq!(names.bridge_ip(), "10.77.42.254");
    }

    #[test]
    fn cleanup_matches_only_our_names() {
        assert_eq!(parse_netns_name("lsj-1a2b-5"), Some(("1a2b".to_owned(), 5)));
        for other in ["lsj-1a2b", "lsj--5", "lsj-XYZ-1", "lsj-1a2b-x", "cni-1234", "lsjtest-1", "lsj-1A2B-1"] {
            assert_eq!(parse_netns_name(other), None, "{other}");
        }
        assert_eq!(parse_bridge_name("lsj1a2b"), Some("1a2b".to_owned()));
        // A veth's host end is not a bridge name of ours.
        for other in ["lsj1a2bv3", "lsj", "docker0", "br-lsj1", "lsjtestbr"] {
            assert_eq!(parse_bridge_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_run_of_a_dead_pid_is_stale() {
        assert!(run_is_alive(&format!("{:x}", std::process::id())));
        // pid_max is at most 2^22, so this pid never exists.
        assert!(!run_is_alive("7fffffff"));
        assert!(!run_is_alive("not-hex"));
    }

    #[test]
    fn setup_builds_bridge_then_members() {
        let names = Names::new(0x1a2b, 9);
        let commands: Vec<String> = names.setup_commands(2).iter().map(|c| c.join(" ")).collect();
        assert_eq!(commands[0], "link add lsj1a2b type bridge");
        assert_eq!(commands[1], "addr add 10.77.9.254/24 dev lsj1a2b");
        assert!(commands.contains(&"netns add lsj-1a2b-2".to_owned()));
        assert!(commands.contains(&"link add lsj1a2bv1 type veth peer name eth0 netns lsj-1a2b-1".to_owned()));
        assert!(commands.contains(&"-n lsj-1a2b-2 addr add 10.77.9.2/24 dev eth0".to_owned()));
        assert_eq!(commands.len(), 3 + 2 * 6);
    }
}
