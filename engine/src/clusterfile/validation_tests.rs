//! One test per validation rule: each bad input is rejected with the field, the value and a position.

use super::*;
use crate::Diagnostics;

const HEAD: &str =
    "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: t\nspec:\n  image: kubernetes:v1.22.15\n";

fn cluster(hosts: &str) -> String {
    format!("{HEAD}  hosts:\n{hosts}")
}

const TWO_HOSTS: &str = "    - ips: [10.0.0.2]\n      roles: [master]\n    - ips: [10.0.0.3]\n      roles: [node]\n";

fn with_plugin(spec: &str) -> String {
    format!(
        "{}---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: p\nspec:\n{spec}",
        cluster(TWO_HOSTS)
    )
}

fn errors(text: &str) -> Diagnostics {
    match parse("Clusterfile", text) {
        Ok(p) => panic!("expected errors, got {:?}", p.clusterfile),
        Err(d) => d,
    }
}

/// Asserts one error mentions `field` and `value` and `message`, and returns its rendering.
fn assert_error(text: &str, field: &str, value: Option<&str>, message: &str) -> String {
    let d = errors(text);
    let found = d.errors().find(|e| e.location.field.as_deref() == Some(field) && e.message.contains(message));
    let Some(e) = found else { panic!("no error on `{field}` containing `{message}` in:\n{d}") };
    assert_eq!(e.value.as_deref(), value, "{e}");
    e.to_string()
}

#[test]
fn a_valid_file_parses_with_its_hosts_in_order() {
    let p = parse("Clusterfile", &cluster(TWO_HOSTS)).unwrap();
    let ips: Vec<String> = p.clusterfile.cluster.hosts.iter().map(|h| h.ip.to_string()).collect();
    assert_eq!(ips, ["10.0.0.2", "10.0.0.3"]);
    assert!(p.warnings.0.is_empty());
}

#[test]
fn yaml_syntax_errors_have_line_and_column() {
    let d = errors("apiVersion: sealer.cloud/v2\nkind: [Cluster\n");
    let e = d.errors().next().unwrap();
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    assert!(e.location.line.is_some() && e.location.column.is_some(), "{e}");
}

#[test]
fn unknown_api_version_and_kind() {
    let text = cluster(TWO_HOSTS).replace("sealer.cloud/v2", "sealer.cloud/v9");
    let shown = assert_error(&text, "apiVersion", Some("sealer.cloud/v9"), "unknown apiVersion");
    assert!(shown.starts_with("error: Clusterfile:1:13: document 1"), "{shown}");
    let text = format!("{}---\napiVersion: v1\nkind: Pod\n", cluster(TWO_HOSTS));
    let shown = assert_error(&text, "kind", Some("Pod"), "unknown kind");
    assert!(shown.contains("document 2"), "{shown}");
}

#[test]
fn missing_image_and_missing_master() {
    let text = cluster("    - ips: [10.0.0.3]\n      roles: [node]\n").replace("  image: kubernetes:v1.22.15\n", "");
    let d = errors(&text);
    assert!(d.errors().any(|e| e.location.field.as_deref() == Some("spec.image")), "{d}");
    assert!(d.errors().any(|e| e.message.contains("no host has the role `master`")), "{d}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = cluster("    - ips: [10.0.0.300, 10.0.0.9-10.0.0.2]\n      roles: [master, boss]\n");
    assert_eq!(errors(&text).errors().count(), 3);
}

#[test]
fn duplicate_ips_across_groups() {
    let text =
        cluster("    - ips: [10.0.0.2-10.0.0.4]\n      roles: [master]\n    - ips: [10.0.0.4]\n      roles: [node]\n");
    let shown = assert_error(&text, "spec.hosts[1].ips[0]", Some("10.0.0.4"), "declared twice");
    assert!(shown.contains("spec.hosts[0].ips[0]"), "{shown}");
}

#[test]
fn reversed_oversized_and_invalid_ranges() {
    let text = cluster("    - ips: [10.0.0.9-10.0.0.2]\n      roles: [master]\n");
    let shown = assert_error(&text, "spec.hosts[0].ips[0]", Some("10.0.0.9-10.0.0.2"), "ends before it starts");
    assert!(shown.contains(":8:13:"), "{shown}");
    let text = cluster("    - ips: [10.0.0.0-10.9.0.0]\n      roles: [master]\n");
    assert_error(&text, "spec.hosts[0].ips[0]", Some("10.0.0.0-10.9.0.0"), "more than the limit");
    let text = cluster("    - ips: [10.0.0.256]\n      roles: [master]\n");
    assert_error(&text, "spec.hosts[0].ips[0]", Some("10.0.0.256"), "not an IP address");
}

#[test]
fn unknown_roles() {
    let text = cluster("    - ips: [10.0.0.2]\n      roles: [master]\n    - ips: [10.0.0.3]\n      roles: [boss]\n");
    assert_error(&text, "spec.hosts[1].roles[0]", Some("boss"), "unknown role");
}

#[test]
fn taint_effects() {
    let text = with_plugin("  type: TAINT\n  action: PostInstall\n  data: |\n    10.0.0.3 key=v:NoWay\n");
    assert_error(&text, "spec.data", Some("key=v:NoWay"), "unknown taint effect `NoWay`");
}

#[test]
fn label_keys_and_values_kubernetes_would_reject() {
    let text = with_plugin("  type: LABEL\n  action: PostInstall\n  data: |\n    10.0.0.3 Bad_Prefix/x=1\n");
    assert_error(&text, "spec.data", Some("Bad_Prefix/x"), "invalid label key");
    let text = with_plugin("  type: LABEL\n  action: PostInstall\n  data: |\n    10.0.0.3 ok=bad$value\n");
    assert_error(&text, "spec.data", Some("bad$value"), "invalid label value");
}

#[test]
fn hostnames_must_be_rfc1123_labels_which_stops_shell_injection() {
    let text = with_plugin("  type: HOSTNAME\n  action: PreInit\n  data: |\n    10.0.0.3 $(reboot)\n");
    assert_error(&text, "spec.data", Some("$(reboot)"), "RFC 1123");
    let text = with_plugin("  type: HOSTNAME\n  action: PreInit\n  data: |\n    10.0.0.2 same\n    10.0.0.3 same\n");
    assert_error(&text, "spec.data", Some("same"), "already given to `10.0.0.2`");
}

#[test]
fn plugin_data_naming_ips_outside_the_cluster() {
    // sealer goes on past hosts it does not have: they are skipped with a warning naming the file's line.
    let text =
        with_plugin("  type: LABEL\n  action: PostInstall\n  data: |\n    10.0.0.1 x=y\n    10.0.0.2-10.0.0.5 a=b\n");
    let parsed = parse("Clusterfile", &text).unwrap();
    let warnings: Vec<_> = parsed.warnings.warnings().collect();
    assert_eq!(warnings.len(), 2, "{:?}", warnings);
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert_eq!(warnings[0].location.line, Some(line_of("10.0.0.1 x=y")));
    assert_eq!(warnings[1].location.line, Some(line_of("10.0.0.2-10.0.0.5")));
    assert_eq!(warnings[1].value.as_deref(), Some("10.0.0.4,10.0.0.5"));
    assert!(warnings[1].message.contains("not in the cluster"), "{}", warnings[1]);
    let labelled: Vec<String> = parsed.clusterfile.labels.keys().map(ToString::to_string).collect();
    assert_eq!(labelled, ["10.0.0.2", "10.0.0.3"]);
    let text = with_plugin("  type: SHELL\n  action: PreInit\n  on: 10.0.0.9\n  data: echo hi\n");
    assert_error(&text, "spec.on", Some("10.0.0.9"), "not a host of the cluster");
}

#[test]
fn unknown_plugin_actions() {
    let text = with_plugin("  type: SHELL\n  action: PreInit|AfterLunch\n  data: echo hi\n");
    assert_error(&text, "spec.action", Some("AfterLunch"), "unknown plugin action");
}

#[test]
fn ssh_port_env_names_and_config_paths() {
    let text = format!("{HEAD}  ssh:\n    port: 70000\n  env: [=x]\n  hosts:\n{TWO_HOSTS}");
    assert_error(&text, "spec.ssh.port", Some("70000"), "not a TCP port");
    assert_error(&text, "spec.env[0]", Some(""), "an env name must be non-empty");
    let text = format!(
        "{}---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Config\nmetadata:\n  name: c\nspec:\n  path: ../etc/x\n  data: a\n  strategy: mix\n",
        cluster(TWO_HOSTS)
    );
    assert_error(&text, "spec.path", Some("../etc/x"), "must not leave the image rootfs");
    assert_error(&text, "spec.strategy", Some("mix"), "unknown strategy");
}

#[test]
fn passwords_never_reach_diagnostics() {
    let text = format!(
        "{HEAD}  ssh:\n    passwd: S3cret-Value\n    port: nope\n  hosts:\n    - ips: [bad]\n      roles: [master]\n"
    );
    let shown = errors(&text).to_string();
    assert!(!shown.contains("S3cret-Value"), "{shown}");
    let ok = parse("Clusterfile", &format!("{HEAD}  ssh:\n    passwd: S3cret-Value\n  hosts:\n{TWO_HOSTS}")).unwrap();
    assert!(!format!("{:?}", ok.clusterfile).contains("S3cret-Value"));
}

#[test]
fn v1alpha1_masters_nodes_network_and_sans() {
    let text = "apiVersion: sealer.aliyun.com/v1alpha1\nkind: Cluster\nmetadata:\n  name: old\nspec:\n  image: k:v1.19.8\n  \
                network:\n    podCIDR: 100.64.0.0/10\n  certSANS: [a.example.com]\n  masters:\n    ipList: [10.0.0.2]\n  \
                nodes:\n    ipList: [10.0.0.3-10.0.0.4]\n";
    let c = parse("Clusterfile", text).unwrap().clusterfile.cluster;
    assert_eq!(c.hosts.len(), 3);
    assert_eq!(c.hosts[2].role, Role::Node);
    assert_eq!(c.pod_cidr.as_deref(), Some("100.64.0.0/10"));
    assert_eq!(c.cert_sans, ["a.example.com"]);
}

#[test]
fn group_ssh_and_env_override_the_cluster_defaults() {
    let text = format!(
        "{HEAD}  env: [A=1, B=2]\n  ssh:\n    user: root\n    passwd: x\n  hosts:\n    - ips: [10.0.0.2]\n      roles: [master]\n    \
         - ips: [10.0.0.3]\n      roles: [node]\n      ssh:\n        user: ops\n        port: 2222\n      env: [B=3]\n"
    );
    let c = parse("Clusterfile", &text).unwrap().clusterfile.cluster;
    let node = &c.hosts[1];
    assert_eq!((node.ssh.user.as_str(), node.ssh.port), ("ops", 2222));
    assert!(node.ssh.password.is_some());
    assert_eq!(node.env.get("A").map(String::as_str), Some("1"));
    assert_eq!(node.env.get("B").map(String::as_str), Some("3"));
    assert_eq!(c.hosts[0].env.get("B").map(String::as_str), Some("2"));
}

#[test]
fn label_selectors_choose_plugin_hosts() {
    let text = format!(
        "{}---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: l\nspec:\n  type: LABEL\n  data: 10.0.0.3 gpu=yes\n\
         ---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: s\nspec:\n  type: SHELL\n  action: PostJoin\n  on: gpu=yes\n  data: echo\n",
        cluster(TWO_HOSTS)
    );
    let cf = parse("Clusterfile", &text).unwrap().clusterfile;
    assert_eq!(cf.plugins[0].hosts, vec!["10.0.0.3".parse::<std::net::IpAddr>().unwrap()]);
}

#[test]
fn taint_removal_lines() {
    let text = with_plugin("  type: TAINT\n  action: PostInstall\n  data: |\n    10.0.0.2 node-role.kubernetes.io/master:NoSchedule-\n    10.0.0.3 a=b:NoExecute,c:PreferNoSchedule\n");
    let cf = parse("Clusterfile", &text).unwrap().clusterfile;
    let master = &cf.taints[&"10.0.0.2".parse().unwrap()];
    assert_eq!(
        master.absent.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["node-role.kubernetes.io/master:NoSchedule"]
    );
    let node = &cf.taints[&"10.0.0.3".parse().unwrap()];
    assert_eq!(node.present.len(), 2);
}

#[test]
fn unknown_fields_are_warnings_not_errors() {
    let text = cluster(TWO_HOSTS).replace("  image:", "  imagee: x\n  image:");
    let p = parse("Clusterfile", &text).unwrap();
    assert!(p.warnings.0.iter().any(|w| w.location.field.as_deref() == Some("spec.imagee")));
}

#[test]
fn sealer_io_v2_is_the_same_cluster_form() {
    let text = cluster(TWO_HOSTS).replace("sealer.cloud/v2", "sealer.io/v2");
    let c = parse("Clusterfile", &text).unwrap().clusterfile.cluster;
    assert_eq!(c.hosts.len(), 2);
}

#[test]
fn plugin_and_config_names_are_as_sealer_takes_them_and_unique() {
    let plugin = |name: &str| {
        format!("---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: {name}\nspec:\n  type: SHELL\n  action: PostInstall\n  data: echo\n")
    };
    let ok = format!("{}{}{}", cluster(TWO_HOSTS), plugin("MyShell"), plugin("label_nodes.so"));
    let parsed = parse("Clusterfile", &ok).unwrap();
    let names: Vec<&str> = parsed.clusterfile.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["MyShell", "label_nodes.so"]);
    let twice = format!("{}{}{}", cluster(TWO_HOSTS), plugin("MyShell"), plugin("MyShell"));
    assert_error(&twice, "metadata.name", Some("MyShell"), "Plugin `MyShell` is declared in documents 2 and 3");
    assert_error(&format!("{}{}", cluster(TWO_HOSTS), plugin("'a b'")), "metadata.name", Some("a b"), "a name is");
}

#[test]
fn secrets_written_wrongly_are_never_echoed() {
    for ssh in [
        "  ssh:\n    passwd: !!int S3cr3t\n",
        "  ssh:\n    passwd: !!bool S3cr3t\n",
        "  ssh:\n    passwd: !!float S3cr3t\n",
        "  ssh:\n    pkPasswd: !!null S3cr3t\n",
        "  ssh:\n    passwd: [S3cr3t]\n",
        "  ssh: S3cr3t\n",
        "  ssh:\n    pkPasswd: {S3cr3t: x}\n",
    ] {
        let text = format!("{HEAD}{ssh}  hosts:\n{TWO_HOSTS}");
        let shown = errors(&text).to_string();
        assert!(!shown.contains("S3cr3t"), "{shown}");
        assert!(shown.contains("ssh"), "the field is named: {shown}");
    }
    let numeric = format!("{HEAD}  ssh:\n    pk: /k\n    pkPasswd: 12345678\n    passwd: 42\n  hosts:\n{TWO_HOSTS}");
    let ssh = parse("Clusterfile", &numeric).unwrap().clusterfile.cluster.ssh;
    assert_eq!(ssh.key_passphrase.unwrap().expose(), "12345678");
    assert_eq!(ssh.password.unwrap().expose(), "42");
}

/// Plugin documents an image carries join the Clusterfile's; a Clusterfile plugin of the same name wins;
/// every problem of every file is reported at once.
#[test]
fn image_plugins_join_the_clusterfile_and_its_own_plugins_win() {
    let own = "apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: same\nspec:\n  type: SHELL\n  \
               action: PostInstall\n  data: echo clusterfile\n";
    let mut cf = parse("Clusterfile", &format!("{}---\n{own}", cluster(TWO_HOSTS))).unwrap().clusterfile;
    let shell = |name: &str, action: &str, on: &str| {
        format!(
            "apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: {name}\nspec:\n  type: SHELL\n  \
             action: {action}\n  on: {on}\n  data: echo {name}\n"
        )
    };
    let file = format!(
        "{}---\n{}---\n{}---\napiVersion: v1\nkind: ConfigMap\n",
        shell("iscsi", "PostInstall", "master"),
        shell("prepare", "PreInit", "\"\""),
        shell("same", "PreInit", "\"\"")
    );
    let (names, warnings) = add_image_plugins(&mut cf, &[("plugin/shell.yaml".into(), file)]).unwrap();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["iscsi", "prepare"]);
    assert!(warnings.0.iter().any(|w| w.message.contains("not a Plugin document")), "{warnings}");
    let by_name = |n: &str| cf.plugins.iter().find(|p| p.name == n).unwrap();
    assert_eq!(by_name("iscsi").hosts, ["10.0.0.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(by_name("prepare").hosts.len(), 2);
    assert_eq!(by_name("same").data, "echo clusterfile", "the Clusterfile's plugin replaces the image's");
    assert_eq!(cf.plugins.iter().filter(|p| p.name == "same").count(), 1);

    let label = "apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: l\nspec:\n  type: LABEL\n  \
                 action: PostInstall\n  data: 10.0.0.2 a=b\n";
    let err = add_image_plugins(
        &mut cf,
        &[
            ("plugins/a.yaml".into(), shell("twice", "PreInit", "\"\"")),
            ("plugins/b.yaml".into(), format!("{}---\n{label}", shell("twice", "PreInit", "\"\""))),
            ("plugins/c.yaml".into(), "kind: [".into()),
        ],
    )
    .unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("plugins/b.yaml") && shown.contains("also declared in `plugins/a.yaml`"), "{shown}");
    assert!(shown.contains("cannot carry HOSTNAME, LABEL or TAINT"), "{shown}");
    assert!(shown.contains("plugins/c.yaml"), "{shown}");
}

#[test]
fn a_value_is_quoted_by_its_first_line_and_80_characters_never_a_whole_file() {
    // `sealer plan -f /etc/passwd`: the lines fold into one long plain scalar, the document's root.
    let passwd: String = (0..40).map(|i| format!("user{i}:x:{i}:{i}:User {i}:/home/user{i}:/bin/sh\n")).collect();
    let d = errors(&passwd);
    let e = d.errors().find(|e| e.message.contains("must be a mapping")).unwrap();
    let value = e.value.as_deref().unwrap();
    assert_eq!(value.chars().count(), crate::diagnostic::MAX_VALUE_CHARS + 1, "{value}");
    assert!(value.starts_with("user0:x:0:0:User 0:/home/user0:/bin/sh user1:x:1:1") && value.ends_with('…'), "{value}");
    assert!(!e.to_string().contains("user39"), "{e}");
    // A literal block keeps its line breaks: only the first line is quoted.
    let block = errors("--- |\n  first line\n  second line\n");
    let e = block.errors().next().unwrap();
    assert_eq!(e.value.as_deref(), Some("first line…"), "{e}");
    // An unknown kind is named in the message too, quoted the same way.
    let kind = errors(&format!("apiVersion: v1\nkind: {}\n", "K".repeat(500)));
    let e = kind.errors().find(|e| e.message.contains("unknown kind")).unwrap();
    assert!(!e.message.contains(&"K".repeat(81)) && e.message.contains(&format!("`{}…`", "K".repeat(80))), "{e}");
    // A short one-line value is quoted whole, without a mark.
    assert_error(
        &cluster("    - ips: [10.0.0.300]\n      roles: [master]\n"),
        "spec.hosts[0].ips[0]",
        Some("10.0.0.300"),
        "not an IP address",
    );
}

#[test]
fn quoted_values_cut_on_characters_and_keep_a_final_line_break_unmarked() {
    use crate::diagnostic::quoted_value;
    assert_eq!(quoted_value("short\n"), "short");
    assert_eq!(quoted_value(""), "");
    let wide = "é".repeat(100);
    assert_eq!(quoted_value(&wide), format!("{}…", "é".repeat(80)));
    assert_eq!(quoted_value(&"x".repeat(80)), "x".repeat(80));
}
