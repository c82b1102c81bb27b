/*
 * CXL platform firmware duties for emulated CXL endpoints: the C half
 *
 * The decisions (which window, whether host bridge decoder 0 fits, is
 * committed, routes a range; the claims) are Rust, in the cxl_regs crate's
 * firmware module, tested there, and in rust/hw/cxl/firmware.  What stays
 * here is what Rust cannot reach: walking QEMU's C device structures
 * through QOM cast macros and static inlines, and the watch list that C
 * code (cxl-component-utils.c) calls into in every build, Rust or not.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "hw/cxl/cxl.h"
#include "hw/cxl/cxl_host.h"
#include "hw/cxl/cxl_firmware.h"
#include "hw/pci/pci_bridge.h"
#include "hw/pci/pcie_port.h"

/*
 * C because it walks the PCI topology with pci_get_bus() and
 * pci_bridge_get_device() (static inlines and QOM cast macros) and reads
 * PXBCXLDev and CXLHost, whose layouts only C headers describe.
 */
bool cxl_firmware_path(PCIDevice *ep, CXLFirmwarePath *out, Error **errp)
{
    PCIBus *bus = pci_get_bus(ep);
    PCIDevice *rp, *hb;
    PXBCXLDev *pxb;
    PCIBus *root;

    if (pci_bus_is_root(bus)) {
        error_setg(errp, "must sit below a CXL root port (cxl-rp), "
                   "not on a root bus");
        return false;
    }
    rp = pci_bridge_get_device(bus);
    root = pci_get_bus(rp);
    if (!object_dynamic_cast(OBJECT(rp), TYPE_PCIE_PORT) ||
        !pci_bus_is_root(root) || !pci_bus_is_cxl(root)) {
        error_setg(errp, "must sit directly below a CXL root port (cxl-rp) "
                   "of a pxb-cxl host bridge; switches are not supported");
        return false;
    }
    hb = pci_bridge_get_device(root);
    if (!hb || !object_dynamic_cast(OBJECT(hb), TYPE_PXB_CXL_DEV)) {
        error_setg(errp, "the root port is not on a pxb-cxl host bridge");
        return false;
    }
    pxb = PXB_CXL_DEV(hb);
    out->hb = OBJECT(hb);
    out->hb_id = DEVICE(hb)->id;
    out->port = PCIE_PORT(rp)->port;
    out->hdm_for_passthrough = pxb->hdm_for_passthrough;
    out->passthrough = pxb->cxl_host_bridge->passthrough;
    out->hdm = pxb->cxl_host_bridge->cxl_cstate.crb.cache_mem_registers +
        R_CXL_HDM_DECODER_CAPABILITY;
    out->hdm_count = CXL_HDM_DECODER_COUNT;
    return true;
}

/*
 * C because the windows are CXLFixedWindow objects in a GSList
 * (cxl_fmws_get_all_sorted()), and an unresolved target is a QOM path.
 */
size_t cxl_firmware_windows(Object *hb, CXLFirmwareWindow *out, size_t max)
{
    g_autoptr(GSList) windows = cxl_fmws_get_all_sorted();
    size_t n = 0;
    GSList *it;

    for (it = windows; it; it = it->next, n++) {
        CXLFixedWindow *fw = CXL_FMW(it->data);
        bool targets_hb = false;
        int i;

        for (i = 0; hb && i < fw->num_targets && !targets_hb; i++) {
            /* Links are resolved at machine done; before, the path. */
            targets_hb = fw->target_hbs[i] ?
                OBJECT(fw->target_hbs[i]) == hb :
                object_resolve_path_type(fw->targets[i], TYPE_PXB_CXL_DEV,
                                         NULL) == hb;
        }
        if (n < max) {
            out[n] = (CXLFirmwareWindow) {
                .mr = &fw->mr,
                .base = fw->base,
                .size = fw->size,
                .ways = fw->num_targets,
                .enc_granularity = fw->enc_int_gran,
                .index = fw->index,
                .targets_hb = targets_hb,
            };
        }
    }
    return n;
}

/*
 * C because cxl-component-utils.c calls cxl_firmware_routes_changed() in
 * every build with CONFIG_CXL, also those without Rust.
 */
typedef struct CXLFirmwareWatch {
    CXLFirmwareRouteFn fn;
    void *opaque;
} CXLFirmwareWatch;
static GSList *cxl_firmware_watches;

void cxl_firmware_watch_routes(CXLFirmwareRouteFn fn, void *opaque)
{
    CXLFirmwareWatch *w = g_new(CXLFirmwareWatch, 1);

    w->fn = fn;
    w->opaque = opaque;
    cxl_firmware_watches = g_slist_prepend(cxl_firmware_watches, w);
}

void cxl_firmware_unwatch_routes(void *opaque)
{
    GSList *it = cxl_firmware_watches;

    while (it) {
        CXLFirmwareWatch *w = it->data;

        it = it->next;
        if (w->opaque == opaque) {
            cxl_firmware_watches = g_slist_remove(cxl_firmware_watches, w);
            g_free(w);
        }
    }
}

void cxl_firmware_routes_changed(void)
{
    GSList *it;

    for (it = cxl_firmware_watches; it; it = it->next) {
        CXLFirmwareWatch *w = it->data;

        w->fn(w->opaque);
    }
}
