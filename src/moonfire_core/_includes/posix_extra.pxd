# Just the POSIX declarations Cython's bundled posix/*.pxd lack, for the file layer
# (_sampledir_c, _writer_c).  openat, fstatat, fdatasync, ftruncate, pwrite, O_DIRECTORY and
# O_CLOEXEC are bundled (posix.fcntl, posix.stat, posix.unistd) and are cimported from there.

cdef extern from "<unistd.h>" nogil:
    int unlinkat(int dirfd, const char *pathname, int flags)

cdef extern from "<sys/file.h>" nogil:
    enum:
        LOCK_SH
        LOCK_EX
        LOCK_NB
    int flock(int fd, int operation)
