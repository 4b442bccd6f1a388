//! `${VAR}` in configured values, read from the environment at startup, so secrets need not
//! sit in the YAML.

/// Expands `${NAME}` in a configured value from the environment, so secrets need not sit in the
/// YAML. A missing variable is an error naming it; `$$` is a literal `$`.
pub fn expand(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {value:?}"))?;
            let name = &inner[..end];
            let found =
                env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&found);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_environment_references() {
        let env = |name: &str| (name == "SECRET").then(|| "s3cr3t".to_owned());
        assert_eq!(expand("${SECRET}", &env), Ok("s3cr3t".into()));
        assert_eq!(expand("a-${SECRET}-b", &env), Ok("a-s3cr3t-b".into()));
        assert_eq!(expand("plain$value", &env), Ok("plain$value".into()));
        assert_eq!(expand("$${SECRET}", &env), Ok("${SECRET}".into()));
        assert_eq!(
            expand("${MISSING}", &env),
            Err("environment variable MISSING is not set".into())
        );
        assert!(expand("${SECRET", &env).is_err());
    }
}
