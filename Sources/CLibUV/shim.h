#ifndef ROBUSTD_CLIBUV_SHIM_H
#define ROBUSTD_CLIBUV_SHIM_H
#include <uv.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <errno.h>

/* glibc declares struct ucred only under _GNU_SOURCE, which would make this module's view of
   the system headers differ from Foundation's; the kernel's layout is fixed, so spell it out. */
struct robustd_ucred { pid_t pid; uid_t uid; gid_t gid; };

/// The uid and pid of the process on the other end of a connected Unix socket (SO_PEERCRED).
/// Returns 0 on success, or -errno.
static inline int robustd_peer_uid(int fd, uid_t *uid, pid_t *pid) {
    struct robustd_ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -errno;
    *uid = cred.uid;
    if (pid) *pid = cred.pid;
    return 0;
}

#include <sys/syscall.h>
#include <sys/resource.h>
#include <unistd.h>

/// Lowers the calling thread's scheduling priority (Linux keeps a nice value per thread).
/// Returns 0 on success, or -errno.
static inline int robustd_nice_this_thread(int nice) {
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (setpriority(PRIO_PROCESS, (id_t)tid, nice) != 0) return -errno;
    return 0;
}
#endif
