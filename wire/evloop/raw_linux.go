package evloop

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's descriptors are non-blocking, so its reads and writes return
// at once, and it makes them as raw system calls, without telling the
// runtime it enters one. Told, the runtime's monitor takes the loop's P
// away from a thread the kernel has preempted inside a write (a loopback
// write wakes the reader, which often runs first), hands it to another
// thread, and the loop waits for a P when it returns: context switches a
// raw call does not cost. The loop only blocks in epoll_wait, and that one
// goes through the runtime (see poll).

// rawRead reads from a non-blocking descriptor.
func rawRead(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// rawWrite writes to a non-blocking descriptor.
func rawWrite(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// poll waits for events. It first asks without waiting, as a raw call;
// only when nothing is ready does it block, through the runtime, so a
// loop waiting for work does not hold a P (a stop of the world for garbage
// collection would wait for it).
func poll(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno == 0 && n > 0 {
		return int(n), nil
	}
	return unix.EpollWait(epfd, events, -1)
}
