// Package standin is the program inside the images that stand in for the
// app's Compose services in tests (testenv.BuildAppStandins): no image
// registry is reachable, so the app's docker-compose.yml runs unmodified
// against FROM-scratch images, built under the real image names, whose
// every binary is testdata/standin, a static build of Run.
//
// Run picks its applet from the base name of args[0] (so /bin/sh and
// /usr/bin/pg_isready can be links to one binary) or, when started as
// "standin", from args[1]. Healthcheck tools:
//
//	sh -c "CMD ARGS"        CMD ARGS split on spaces and run as an applet
//	                        (CMD-SHELL healthchecks); no other shell syntax
//	pg_isready [-h H] [-p P] [-t SECS] [-q]
//	                        exit 0 when H:P (127.0.0.1:5432) answers a
//	                        PostgreSQL SSLRequest, 2 when nothing answers
//	redis-cli [-h H] [-p P] ping
//	                        exit 0 on +PONG from H:P (127.0.0.1:6379)
//	curl [-fsSL] [-m SECS] [-o FILE] URL
//	wget [-q] [--spider] [--tries=N] [-T SECS] [-O FILE] URL
//	                        HTTP GET; exit 0 on a 2xx answer only
//	rabbitmq-diagnostics [-q] ping
//	                        exit 0 when 127.0.0.1:5672 accepts a connection
//
// Services (container entrypoints), each stopping cleanly when ctx ends:
//
//	standin db        TCP proxy from :5432 to the test's PostgreSQL on the
//	                  host: the container's default gateway (from
//	                  /proc/net/route), port $STANDIN_UPSTREAM_PORT
//	standin redis     a Redis server (miniredis) on :6379
//	standin mailhog   an SMTP sink on :1025 (accepts and drops every
//	                  message) and HTTP 200 on :8025
//	standin rabbitmq  :5672 closes every AMQP connection at once (clients
//	                  reconnect later instead of hanging in a handshake);
//	                  HTTP 200 on :15672
//
// It is only as real as the app's compose file and clients need to come
// up healthy; it must never be used outside tests.
package standin
