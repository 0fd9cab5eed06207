// Package pm2 runs the application's processes under PM2: it writes an
// ecosystem file from the environment spec, starts or reloads processes
// (cluster-mode processes reload without dropping requests), stops the
// ones no longer declared, and reads their status from `pm2 jlist` —
// once: while PM2's own pid files and the processes they name stay the
// same, the status read stands, and a poll starts no PM2 CLI (observe.go).
//
// Every pm2 command goes through proc with an explicit environment and
// the manager's own PM2_HOME. It never touches processes it did not
// start under that PM2_HOME.
package pm2
