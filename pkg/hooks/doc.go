// Package hooks runs a release's build hooks (pnpm --filter api build and
// the like) as the application user, or, when neither code nor
// dependencies changed, carries the outputs they declared over from the
// previous release as hard-link clones instead of building again.
//
// hooks must never run a hook as root (it refuses when it is root and no
// unprivileged user is set), pass the agent's own environment through
// (the child gets exactly Env plus HOME, USER, LOGNAME and CI), leave a
// hook's processes behind after a timeout (the whole process group is
// killed), or carry over anything but the declared outputs, reached
// through no symlink.
package hooks
