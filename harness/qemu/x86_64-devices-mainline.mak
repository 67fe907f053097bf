# The devices of the harness's QEMU 10.2 build (harness/qemu.sh), on top of
# --without-default-devices, which leaves QEMU 10.2 with machine "none"
# only: the pc machine (I440FX) and the serial port the end-to-end guest
# uses.  I440FX pulls in PCI Express, PXB and CXL, which QEMU 10.2 needs
# to link and to start the pc machine ("cxl-rp" is a parent type).
CONFIG_I440FX=y
CONFIG_SERIAL_ISA=y
CONFIG_PCI_EXPRESS=y
CONFIG_PXB=y
CONFIG_CXL=y
CONFIG_CXL_MEM_DEVICE=y
CONFIG_PCIE_PORT=y
