//! A plan as a pull-request comment: the summary, a table of the changes by kind and action, the
//! warnings, then each change in a collapsible block (the human rendering: secrets are `(sensitive)`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sealer_engine::{Action, Diagnostic, Kind, Plan};

pub fn plan(plan: &Plan, warnings: &[Diagnostic]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### sealer plan: cluster `{}`\n", plan.cluster);
    let s = plan.summary();
    if !plan.has_changes() {
        let _ = writeln!(out, "**No changes.** The cluster matches the Clusterfile.");
    } else {
        let _ = writeln!(
            out,
            "**Plan: {} to add, {} to change, {} to replace, {} to destroy.**\n",
            s.create, s.update, s.replace, s.delete
        );
        let mut by_kind: BTreeMap<Kind, [usize; 4]> = BTreeMap::new();
        for c in &plan.changes {
            let column = match c.action {
                Action::Create => 0,
                Action::Update => 1,
                Action::Replace => 2,
                Action::Delete => 3,
                Action::NoOp => continue,
            };
            by_kind.entry(c.kind).or_default()[column] += 1;
        }
        let _ = writeln!(out, "| kind | add | change | replace | destroy |\n|---|---:|---:|---:|---:|");
        for (kind, n) in by_kind {
            let _ = writeln!(out, "| `{}` | {} | {} | {} | {} |", kind.as_str(), n[0], n[1], n[2], n[3]);
        }
    }
    if !warnings.is_empty() {
        let _ = writeln!(out, "\n**Warnings**\n");
        for w in warnings {
            let _ = writeln!(out, "- {}", w.to_string().replace('`', "'"));
        }
    }
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        let symbol = super::human::symbol(c.action);
        let _ = writeln!(
            out,
            "\n<details><summary><code>{symbol} {}</code></summary>\n\n```\n{}```\n\n</details>",
            c.address,
            super::human::change_text(c, plan.notes.get(&c.address)).replace("```", "'''")
        );
    }
    out
}
