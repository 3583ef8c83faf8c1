package gateway

import (
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Copy buffers. An idle session has several copies blocked in a read; a
// buffer each of them held would be most of what an idle connection costs
// (about 70 KiB of the 220 measured by BenchmarkIdleConnections before).
// So a copy holds no large buffer while it waits:
//
//   - a descriptor (*os.File) is read through its poller only once it is
//     readable, into a buffer from the pool that goes back right after the
//     write;
//   - any other reader (an SSH channel) is read into a small buffer, and a
//     pooled big one is taken only while reads keep filling the small one.
const (
	bigBuf   = 32 << 10 // one SSH packet's worth
	smallBuf = 2 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, bigBuf); return &b }}

// chunkReader reads the next chunk of a stream; release hands its buffer
// back once the chunk was written.
type chunkReader interface {
	next() (chunk []byte, release func(), err error)
}

func newChunkReader(r io.Reader) chunkReader {
	if f, ok := r.(*os.File); ok {
		if rc, err := f.SyscallConn(); err == nil {
			return &fileChunks{f: f, rc: rc}
		}
	}
	return &adaptiveChunks{r: r, small: make([]byte, smallBuf)}
}

// fileChunks reads a non-blocking descriptor when it is readable.
type fileChunks struct {
	f  *os.File
	rc interface {
		Read(func(uintptr) bool) error
	}
}

func (c *fileChunks) next() ([]byte, func(), error) {
	var buf *[]byte
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		b := bufPool.Get().(*[]byte)
		for {
			n, rerr = unix.Read(int(fd), *b)
			if rerr != unix.EINTR {
				break
			}
		}
		if rerr == unix.EAGAIN {
			bufPool.Put(b)
			return false // wait until readable, holding nothing
		}
		buf = b
		return true
	})
	if err == nil {
		err = rerr
	}
	if buf == nil {
		if err == nil {
			err = io.EOF
		}
		return nil, func() {}, err
	}
	release := func() { bufPool.Put(buf) }
	switch {
	case err != nil:
		release()
		return nil, func() {}, err
	case n <= 0:
		release()
		return nil, func() {}, io.EOF
	}
	return (*buf)[:n], release, nil
}

// adaptiveChunks reads into a small buffer, and into a pooled big one while
// the stream is busy.
type adaptiveChunks struct {
	r     io.Reader
	small []byte
	big   *[]byte
}

func (c *adaptiveChunks) next() ([]byte, func(), error) {
	b := c.small
	if c.big != nil {
		b = *c.big
	}
	n, err := c.r.Read(b)
	switch {
	case c.big == nil && n == len(c.small):
		c.big = bufPool.Get().(*[]byte) // busy: read big from now on
	case c.big != nil && n < len(b)/4:
		big := c.big // quiet again: give the big one back after this chunk
		c.big = nil
		return b[:n], func() { bufPool.Put(big) }, err
	}
	return b[:n], func() {}, err
}
