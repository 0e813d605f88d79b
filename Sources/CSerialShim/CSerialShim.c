// Kernel-header glue; see include/CSerialShim.h. Only kernel headers here: <termios.h> would clash with them.
#include <asm/ioctls.h>
#include <asm/termbits.h>
#include <linux/serial.h>
#include <stddef.h>
#include <sys/ioctl.h>

#include "CSerialShim.h"

const uint32_t cserial_rs485_enabled = SER_RS485_ENABLED;
const uint32_t cserial_rs485_rts_on_send = SER_RS485_RTS_ON_SEND;
const uint32_t cserial_rs485_rts_after_send = SER_RS485_RTS_AFTER_SEND;
const uint32_t cserial_rs485_rx_during_tx = SER_RS485_RX_DURING_TX;

int cserial_set_custom_baud(int fd, unsigned rate) {
    struct termios2 tio;
    if (ioctl(fd, TCGETS2, &tio) == -1) {
        return -1;
    }
    // Output speed in c_ospeed; clearing the CIBAUD field makes the input speed follow the output speed.
    tio.c_cflag &= ~(CBAUD | (CBAUD << IBSHIFT));
    tio.c_cflag |= BOTHER | (BOTHER << IBSHIFT);
    tio.c_ispeed = rate;
    tio.c_ospeed = rate;
    return ioctl(fd, TCSETS2, &tio);
}

int cserial_get_baud(int fd, unsigned *ispeed, unsigned *ospeed) {
    struct termios2 tio;
    if (ioctl(fd, TCGETS2, &tio) == -1) {
        return -1;
    }
    *ispeed = tio.c_ispeed;
    *ospeed = tio.c_ospeed;
    return 0;
}

int cserial_set_rs485(int fd, uint32_t flags, uint32_t delay_before_ms, uint32_t delay_after_ms) {
    struct serial_rs485 rs485 = {0};
    rs485.flags = flags;
    rs485.delay_rts_before_send = delay_before_ms;
    rs485.delay_rts_after_send = delay_after_ms;
    return ioctl(fd, TIOCSRS485, &rs485);
}

int cserial_get_rs485(int fd, uint32_t *flags, uint32_t *delay_before_ms, uint32_t *delay_after_ms) {
    struct serial_rs485 rs485 = {0};
    if (ioctl(fd, TIOCGRS485, &rs485) == -1) {
        return -1;
    }
    *flags = rs485.flags;
    *delay_before_ms = rs485.delay_rts_before_send;
    *delay_after_ms = rs485.delay_rts_after_send;
    return 0;
}

int cserial_set_exclusive(int fd) {
    return ioctl(fd, TIOCEXCL);
}

int cserial_clear_exclusive(int fd) {
    return ioctl(fd, TIOCNXCL);
}

int cserial_output_queue(int fd, int *count) {
    return ioctl(fd, TIOCOUTQ, count);
}

int cserial_input_queue(int fd, int *count) {
    return ioctl(fd, TIOCINQ, count);
}
