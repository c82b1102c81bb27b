#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "=== INIT reached, uptime $(cut -d' ' -f1 /proc/uptime)"
for m in libnvdimm cxl_pmem cxl_acpi cxl_mem cxl_pci; do insmod /mod/$m.ko; done
sleep 1
echo "=== PCI"
for d in /sys/bus/pci/devices/*; do echo "$(basename $d) $(cat $d/vendor):$(cat $d/device) class $(cat $d/class) driver $(basename $(readlink $d/driver) 2>/dev/null)"; done
echo "=== CXL devices"; ls /sys/bus/cxl/devices
for d in /sys/bus/cxl/devices/decoder*; do echo "$(basename $d) start=$(cat $d/start) size=$(cat $d/size) locked=$(cat $d/locked 2>/dev/null) type=$(cat $d/target_type 2>/dev/null) region=$(cat $d/region 2>/dev/null)"; done
echo "=== iomem"; grep -i -A3 "cxl" /proc/iomem
BASE=$(cat /sys/bus/cxl/devices/decoder0.0/start 2>/dev/null)
echo "=== devmem at $BASE"
if [ -n "$BASE" ] && [ "$BASE" != 0x0 ]; then
  devmem $BASE 32 0xCAFEBABE
  devmem $((BASE + 0x1000)) 32 0x5EEDF00D
  devmem $((BASE + 0xFFFF000)) 32 0x0DDC0FFE
  echo "readback $(devmem $BASE 32) $(devmem $((BASE + 0x1000)) 32) $(devmem $((BASE + 0xFFFF000)) 32)"
fi
echo "=== vfio-cxl-pci"
for m in irqbypass vfio vfio_iommu_type1 vfio-pci-core vfio-cxl-core vfio-cxl-pci; do insmod /mod/$m.ko || echo "insmod $m failed"; done
DEV=$(for d in /sys/bus/pci/devices/*; do [ "$(cat $d/device)" = 0x0015 ] && basename $d; done)
echo "device $DEV"
echo vfio-cxl-pci > /sys/bus/pci/devices/$DEV/driver_override
echo $DEV > /sys/bus/pci/drivers_probe
sleep 1
echo "driver: $(basename $(readlink /sys/bus/pci/devices/$DEV/driver) 2>/dev/null)"
ls /sys/bus/cxl/devices
for d in /sys/bus/cxl/devices/region*; do [ -e $d ] && echo "$(basename $d) resource=$(cat $d/resource) size=$(cat $d/size) commit=$(cat $d/commit) target0=$(cat $d/target0)"; done
ls /dev/vfio
echo "=== dmesg"
dmesg | grep -i -E "cxl|vfio|0015" | grep -v "^$" | tail -60
echo "=== DONE uptime $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
