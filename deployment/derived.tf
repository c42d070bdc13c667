# Values derived from the variables alone: no resource, no data source, no provider, so that
# tests/deployment.rs can evaluate them offline (terraform console over this file and
# variables.tf) with the variables an operator might set.

locals {
  # Descriptors besides the client connections: the Redis pool (REDIS_MAX_CONNECTIONS, 32),
  # peers asked for /health/cluster, AWS API calls, an epoll and an eventfd per worker, the
  # listener and stdio. A few dozen in practice; 1024 leaves room for raising those bounds.
  nofile_headroom = 1024
  # The task's open-file limit, soft and hard alike: the service raises its soft limit to the
  # hard one at start, and refuses connections past HTTP_MAX_CONNECTIONS itself.
  nofile = var.http_max_connections + local.nofile_headroom

  # The service's keep-alive idle time, in the milliseconds it reads.
  service_idle_timeout_ms = var.idle_timeouts.service * 1000

}
