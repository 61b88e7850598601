#ifndef ROBUSTD_CLIBUV_SHIM_H
#define ROBUSTD_CLIBUV_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <uv.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <errno.h>

/// The uid of the process on the other end of a connected Unix socket (SO_PEERCRED).
/// Returns 0 on success, or -errno.
static inline int robustd_peer_uid(int fd, uid_t *uid, pid_t *pid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -errno;
    *uid = cred.uid;
    if (pid) *pid = cred.pid;
    return 0;
}
#endif
