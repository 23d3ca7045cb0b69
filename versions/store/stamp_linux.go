package store

import (
	"os"
	"syscall"
	"time"
)

// stampOf reads what the intact check compares: the file's device and
// inode, size, mtime and ctime. ctime is the one a user cannot set: any
// write, chmod, utimes (os.Chtimes) or link change sets it to the clock.
func stampOf(fi os.FileInfo) (stamp, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return stamp{}, false
	}
	return stamp{
		dev:   uint64(st.Dev),
		ino:   st.Ino,
		size:  st.Size,
		mtime: time.Unix(st.Mtim.Unix()).UnixNano(),
		ctime: time.Unix(st.Ctim.Unix()).UnixNano(),
	}, true
}
