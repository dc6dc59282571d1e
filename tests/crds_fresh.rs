//! The committed CRDs (and the chart's copy, when present) must be what the code generates.

#[test]
fn committed_crds_match_the_generated_ones() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = scim_operator::operator::crd::crd_documents().expect("generate");
    assert_eq!(docs.len(), 5);
    for dir in [root.join("crds"), root.join("charts/scim-operator/crds")] {
        if dir.ends_with("charts/scim-operator/crds") && !dir.exists() {
            continue;
        }
        for (name, yaml) in &docs {
            let path = dir.join(name);
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                committed == *yaml,
                "{} is stale: run `scim-operator crds --out {}`",
                path.display(),
                dir.strip_prefix(root).unwrap_or(&dir).display()
            );
        }
    }
}

/// The chart's admission policy sets the finalizer the operator looks for, on the kinds that
/// carry it (a rename in the code must reach the chart).
#[test]
fn the_chart_sets_the_operators_finalizer() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("charts/scim-operator/templates/finalizer-policy.yaml");
    let policy = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let finalizer = scim_operator::operator::FINALIZER;
    assert!(policy.contains(&format!("finalizers: [\"{finalizer}\"]")), "{} does not set {finalizer}", path.display());
    assert!(policy.contains(r#"resources: ["scimusers", "managedteams", "rolemappings"]"#));
}
