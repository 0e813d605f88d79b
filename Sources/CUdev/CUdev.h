// libudev for SerialPortEnumerator (device enumeration and udev properties). libudev-dev: tools/setup.
#include <libudev.h>
