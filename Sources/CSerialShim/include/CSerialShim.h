// Kernel-header glue for the SerialPort module: termios2 custom baud rates, struct serial_rs485 and the ioctls
// Swift cannot call because ioctl(2) is variadic. No logic lives here: each function is one ioctl with plain C
// types, returning what the ioctl returned (-1 with errno set on failure), like a system call.
//
// This header deliberately includes only <stdint.h>: the kernel headers the implementation needs
// (<asm/termbits.h>, <linux/serial.h>) clash with glibc's <termios.h>, which Swift imports through Glibc.

#ifndef CSERIALSHIM_H
#define CSERIALSHIM_H

#include <stdint.h>

/// RS-485 flag bits of struct serial_rs485 (values from <linux/serial.h>, exported as constants so that Swift
/// does not need the kernel header).
extern const uint32_t cserial_rs485_enabled;
extern const uint32_t cserial_rs485_rts_on_send;
extern const uint32_t cserial_rs485_rts_after_send;
extern const uint32_t cserial_rs485_rx_during_tx;

/// Sets input and output speed to an arbitrary rate with termios2 and BOTHER (TCGETS2, then TCSETS2).
int cserial_set_custom_baud(int fd, unsigned rate);

/// Reads the real input and output speed in bits per second with termios2 (TCGETS2), whatever the speed code.
int cserial_get_baud(int fd, unsigned *ispeed, unsigned *ospeed);

/// Sets RS-485 mode with TIOCSRS485; delays are in milliseconds. Fails with ENOTTY where the driver has no RS-485.
int cserial_set_rs485(int fd, uint32_t flags, uint32_t delay_before_ms, uint32_t delay_after_ms);

/// Reads RS-485 mode with TIOCGRS485. Fails with ENOTTY where the driver has no RS-485.
int cserial_get_rs485(int fd, uint32_t *flags, uint32_t *delay_before_ms, uint32_t *delay_after_ms);

/// TIOCEXCL: further open(2) calls on the terminal fail with EBUSY, except for root (CAP_SYS_ADMIN).
int cserial_set_exclusive(int fd);

/// TIOCNXCL: clears TIOCEXCL.
int cserial_clear_exclusive(int fd);

/// TIOCOUTQ: bytes in the output queue not yet sent.
int cserial_output_queue(int fd, int *count);

/// TIOCINQ: bytes in the input queue not yet read.
int cserial_input_queue(int fd, int *count);

#endif
