// Package extract unpacks an untrusted bundle (.tar.gz) into a fresh,
// empty directory on a production host, where the agent runs as root.
//
// The archive has passed its digest check, but extraction still treats it
// as hostile: a signed bundle can come from a compromised CI, and a bug
// elsewhere must not turn into root on the host. So Extract must never:
//
//   - create, change or remove anything outside the target directory, even
//     through a symlink planted by an earlier entry or by a race (all writes
//     go through an os.Root opened on the directory);
//   - write a file or directory through a symlink, or leave a symlink that
//     is absolute or resolves outside the directory (targets are checked
//     lexically and again through the finished tree's own symlinks before
//     any symlink is created, so even a failed extraction leaves none);
//   - create hard links, devices, FIFOs or any entry other than a regular
//     file, a directory or a symlink;
//   - set setuid, setgid or sticky bits, apply owners (never chown), extended
//     attributes or any mode other than 0644/0755 for files and 0755 for
//     directories;
//   - accept an entry twice, a name that is not a clean relative path, or a
//     name with NUL, backslash or invalid UTF-8;
//   - write more entries or bytes than its Limits allow, counting bytes
//     actually copied rather than trusting header sizes;
//   - accept damaged input: not gzip, truncated gzip or tar, a tar without
//     its end-of-archive marker, or data after the gzip stream.
//
// Refusals are *UnsafeError (one entry, one reason) or errors marked
// fault.Rejected; both map to exit code 3. Extract does not fsync and does
// not clean up: on error the caller removes the directory.
package extract
