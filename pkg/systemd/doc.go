// Package systemd runs the application's processes as systemd units, the
// alternative to PM2: one cohuron-<name>.service per process, pointing at
// the live root, with the env file as EnvironmentFile. It writes unit
// files and drives systemctl through proc; it never touches units it did
// not write (their names start with the prefix).
package systemd
