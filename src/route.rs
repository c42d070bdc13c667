//! The API's routes: the one list that routing, `/metrics` and CloudWatch share, with what each
//! route is called by each of them and the methods it takes.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Root,
    Hello,
    Counts,
    Health,
    Cluster,
    Metrics,
    /// No route serves the path: 404, redirects, `OPTIONS *` and refusals are counted here.
    Other,
}

impl Route {
    pub const ALL: [Route; 7] = [
        Route::Root,
        Route::Hello,
        Route::Counts,
        Route::Health,
        Route::Cluster,
        Route::Metrics,
        Route::Other,
    ];

    /// The route for a path, with the raw `{name}` segment for `/hello/{name}`.
    pub fn resolve(path: &str) -> (Route, &str) {
        let route = match path {
            "/" => Route::Root,
            "/counts" => Route::Counts,
            "/health" => Route::Health,
            "/health/cluster" => Route::Cluster,
            "/metrics" => Route::Metrics,
            _ => match path.strip_prefix("/hello/") {
                Some(segment) if !segment.contains('/') => return (Route::Hello, segment),
                _ => Route::Other,
            },
        };
        (route, "")
    }

    /// The route's pattern: its label in `/metrics` and in messages.
    pub fn label(self) -> &'static str {
        match self {
            Route::Root => "/",
            Route::Hello => "/hello/{name}",
            Route::Counts => "/counts",
            Route::Health => "/health",
            Route::Cluster => "/health/cluster",
            Route::Metrics => "/metrics",
            Route::Other => "other",
        }
    }

    /// The start of the route's CloudWatch metric names.
    pub fn metric_name(self) -> &'static str {
        match self {
            Route::Root => "Root",
            Route::Hello => "Hello",
            Route::Counts => "Counts",
            Route::Health => "Health",
            Route::Cluster => "HealthCluster",
            Route::Metrics => "Metrics",
            Route::Other => "Other",
        }
    }

    /// The methods the route takes. `/hello` changes state, so it does not answer HEAD.
    pub fn allow(self) -> &'static str {
        match self {
            Route::Hello => "GET, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_routes_and_segments() {
        assert_eq!(Route::resolve("/"), (Route::Root, ""));
        assert_eq!(Route::resolve("/hello/Bob"), (Route::Hello, "Bob"));
        assert_eq!(Route::resolve("/hello/"), (Route::Hello, ""));
        assert_eq!(Route::resolve("/hello/a/b").0, Route::Other);
        assert_eq!(Route::resolve("/hello").0, Route::Other);
        assert_eq!(Route::resolve("/health/cluster"), (Route::Cluster, ""));
        assert_eq!(Route::resolve("/counts/").0, Route::Other);
        assert_eq!(Route::Cluster.label(), "/health/cluster");
    }
}
