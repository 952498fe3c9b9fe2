// A stand-in for a guest's QEMU process in scripts/bench-peer: it sleeps forever, so its command
// line ("qemu-system-x86_64 -uuid UUID", the way libvirt starts QEMU) lets memtided and oVirt MOM
// find a process for each test-driver domain and read its /proc files as they would a guest's.
// scripts/bench-peer copies it to a root-owned file named qemu-system-x86_64, which memtided's
// trust check asks of a QEMU binary. It takes no memory worth counting.
#include <unistd.h>

int main() {
  for (;;) {
    pause();
  }
}
