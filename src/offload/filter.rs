//! `--include` / `--exclude`: which files of the chosen routes a run may touch, by globs on the
//! path below the route's prefix, with the same syntax as the routes' `rules:` (`*` within a
//! segment, `**` across segments).

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, thiserror::Error)]
#[error("--{flag} {pattern:?} is not a glob: {error}")]
pub struct BadGlob {
    flag: &'static str,
    pattern: String,
    error: globset::Error,
}

/// A file is taken when it matches an include (or none are given) and no exclude.
#[derive(Debug, Clone)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter, BadGlob> {
        Ok(Filter {
            include: set("include", include)?,
            exclude: set("exclude", exclude)?,
        })
    }

    /// Whether the file at `relative` (below the prefix, not percent-encoded) may be moved.
    pub fn admits(&self, relative: &str) -> bool {
        self.include.as_ref().is_none_or(|s| s.is_match(relative))
            && !self.exclude.as_ref().is_some_and(|s| s.is_match(relative))
    }

    pub fn is_everything(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }
}

fn set(flag: &'static str, patterns: &[String]) -> Result<Option<GlobSet>, BadGlob> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern.trim_start_matches('/'))
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|error| BadGlob {
                flag,
                pattern: pattern.clone(),
                error,
            })?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|error| BadGlob {
        flag,
        pattern: patterns.join(" "),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> Filter {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Filter::new(&owned(include), &owned(exclude)).expect("valid globs")
    }

    #[test]
    fn includes_then_excludes_on_the_path_below_the_prefix() {
        let cases = [
            (filter(&[], &[]), "a/b.jpg", true),
            (filter(&["*.jpg"], &[]), "b.jpg", true),
            (filter(&["*.jpg"], &[]), "a/b.jpg", false),
            (filter(&["**/*.jpg"], &[]), "a/b.jpg", true),
            (filter(&["/photos/**"], &[]), "photos/x/y.png", true),
            (filter(&["photos/**"], &["**/*.tmp"]), "photos/x.tmp", false),
            (filter(&[], &["cache/**"]), "cache/a", false),
            (filter(&[], &["cache/**"]), "caches/a", true),
        ];
        for (filter, path, admitted) in cases {
            assert_eq!(filter.admits(path), admitted, "{path} with {filter:?}");
        }
    }

    #[test]
    fn a_bad_glob_is_named() {
        let err = Filter::new(&["a[".to_owned()], &[]).expect_err("unclosed class");
        assert_eq!(
            err.to_string(),
            "--include \"a[\" is not a glob: error parsing glob 'a[': unclosed character class; missing ']'"
        );
    }
}
