/*
 * CXL platform firmware duties for emulated CXL endpoints
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "hw/cxl/cxl.h"
#include "hw/cxl/cxl_host.h"
#include "hw/cxl/cxl_firmware.h"
#include "hw/pci/pci_bridge.h"
#include "hw/pci/pcie_port.h"
#include "system/memory.h"

/* The pxb-cxl host bridge and the root port above @ep. */
static PXBCXLDev *cxl_firmware_path(PCIDevice *ep, PCIEPort **port,
                                    Error **errp)
{
    PCIBus *bus = pci_get_bus(ep);
    PCIDevice *rp, *hb;
    PCIBus *root;

    if (pci_bus_is_root(bus)) {
        error_setg(errp, "must sit below a CXL root port (cxl-rp), "
                   "not on a root bus");
        return NULL;
    }
    rp = pci_bridge_get_device(bus);
    root = pci_get_bus(rp);
    if (!object_dynamic_cast(OBJECT(rp), TYPE_PCIE_PORT) ||
        !pci_bus_is_root(root) || !pci_bus_is_cxl(root)) {
        error_setg(errp, "must sit directly below a CXL root port (cxl-rp) "
                   "of a pxb-cxl host bridge; switches are not supported");
        return NULL;
    }
    hb = pci_bridge_get_device(root);
    if (!hb || !object_dynamic_cast(OBJECT(hb), TYPE_PXB_CXL_DEV)) {
        error_setg(errp, "the root port is not on a pxb-cxl host bridge");
        return NULL;
    }
    *port = PCIE_PORT(rp);
    return PXB_CXL_DEV(hb);
}

/* Whether window target @i is @hb (links are resolved at machine done). */
static bool cxl_firmware_targets(CXLFixedWindow *fw, int i, PXBCXLDev *hb)
{
    if (fw->target_hbs[i]) {
        return fw->target_hbs[i] == hb;
    }
    return object_resolve_path_type(fw->targets[i], TYPE_PXB_CXL_DEV,
                                    NULL) == OBJECT(hb);
}

static void cxl_firmware_describe(CXLFixedWindow *fw, CXLFirmwareWindow *out)
{
    out->mr = &fw->mr;
    out->base = fw->base;
    out->size = fw->size;
    out->ways = fw->num_targets;
    out->enc_granularity = fw->enc_int_gran;
    out->index = fw->index;
}

bool cxl_firmware_find_window(PCIDevice *ep, uint64_t size,
                              CXLFirmwareWindow *out, Error **errp)
{
    g_autoptr(GSList) windows = cxl_fmws_get_all_sorted();
    const char *hb_id;
    bool interleaved = false, too_small = false;
    PCIEPort *port;
    PXBCXLDev *hb;
    GSList *it;

    hb = cxl_firmware_path(ep, &port, errp);
    if (!hb) {
        return false;
    }
    hb_id = DEVICE(hb)->id ? DEVICE(hb)->id : "(no id)";
    if (!hb->hdm_for_passthrough) {
        error_setg(errp, "host bridge %s has no HDM decoders: add "
                   "hdm_for_passthrough=on to its -device pxb-cxl", hb_id);
        return false;
    }
    for (it = windows; it; it = it->next) {
        CXLFixedWindow *fw = CXL_FMW(it->data);
        int i;

        for (i = 0; i < fw->num_targets; i++) {
            if (cxl_firmware_targets(fw, i, hb)) {
                break;
            }
        }
        if (i == fw->num_targets) {
            continue;
        }
        if (fw->num_targets != 1) {
            interleaved = true;
            continue;
        }
        if (fw->size < size || !fw->base) {
            too_small = true;
            continue;
        }
        cxl_firmware_describe(fw, out);
        return true;
    }
    error_setg(errp, "no CXL fixed memory window targets only host bridge "
               "%s with room for %" PRIu64 " MiB%s%s: add e.g. "
               "-M cxl-fmw.0.targets.0=%s,cxl-fmw.0.size=4G",
               hb_id, size / MiB,
               interleaved ? " (interleaved windows are not used)" : "",
               too_small ? " (windows targeting it are too small)" : "",
               hb_id);
    return false;
}

/* Host bridge -> the endpoint whose pre-commit owns its HDM decoder 0. */
static GHashTable *cxl_firmware_claims;

static const char *cxl_firmware_dev_name(DeviceState *dev)
{
    return dev->id ? dev->id : object_get_typename(OBJECT(dev));
}

/*
 * Whether host bridge decoder 0 is free, or already decodes exactly
 * [@base, @base + @size) to @port: firmware left it committed and locked
 * for a device that was since unplugged, and the same device plugged into
 * the same root port gets the same range again.
 */
static bool cxl_firmware_hb_decoder_fits(PXBCXLDev *hb, PCIEPort *port,
                                         uint64_t base, uint64_t size,
                                         Error **errp)
{
    uint32_t *cm = hb->cxl_host_bridge->cxl_cstate.crb.cache_mem_registers;
    uint64_t old_base, old_size;
    uint32_t old_target;

    if (!FIELD_EX32(ldl_le_p(cm + R_CXL_HDM_DECODER0_CTRL),
                    CXL_HDM_DECODER0_CTRL, COMMITTED)) {
        return true;
    }
    /* ldl_le_p() returns int: keep the low halves from sign-extending. */
    old_base = (uint32_t)ldl_le_p(cm + R_CXL_HDM_DECODER0_BASE_LO) |
        (uint64_t)(uint32_t)ldl_le_p(cm + R_CXL_HDM_DECODER0_BASE_HI) << 32;
    old_size = (uint32_t)ldl_le_p(cm + R_CXL_HDM_DECODER0_SIZE_LO) |
        (uint64_t)(uint32_t)ldl_le_p(cm + R_CXL_HDM_DECODER0_SIZE_HI) << 32;
    old_target = ldl_le_p(cm + R_CXL_HDM_DECODER0_TARGET_LIST_LO) & 0xff;
    if (old_base != base || old_size != size || old_target != port->port) {
        error_setg(errp, "HDM decoder 0 of host bridge %s already decodes "
                   "0x%" PRIx64 "+0x%" PRIx64 " for root port %u, not "
                   "0x%" PRIx64 "+0x%" PRIx64 " for root port %u "
                   "(committed by the guest, or for another device)",
                   cxl_firmware_dev_name(DEVICE(hb)), old_base, old_size,
                   old_target, base, size, port->port);
        return false;
    }
    return true;
}

bool cxl_firmware_claim_hb(PCIDevice *ep, uint64_t base, uint64_t size,
                           Error **errp)
{
    PCIDevice *holder;
    PCIEPort *port;
    PXBCXLDev *hb;

    hb = cxl_firmware_path(ep, &port, errp);
    if (!hb) {
        return false;
    }
    if (!cxl_firmware_claims) {
        cxl_firmware_claims = g_hash_table_new(NULL, NULL);
    }
    holder = g_hash_table_lookup(cxl_firmware_claims, hb);
    if (holder && holder != ep) {
        error_setg(errp, "HDM decoder 0 of host bridge %s is already "
                   "pre-committed for %s (one pre-committed device per "
                   "host bridge): put this device below another pxb-cxl "
                   "with its own window, or set precommit=off",
                   cxl_firmware_dev_name(DEVICE(hb)),
                   cxl_firmware_dev_name(DEVICE(holder)));
        return false;
    }
    /* Hot-plug: what reset will commit must fit what is committed. */
    if (!holder &&
        !cxl_firmware_hb_decoder_fits(hb, port, base, size, errp)) {
        error_append_hint(errp, "set precommit=off, or plug the device "
                          "below another pxb-cxl\n");
        return false;
    }
    g_hash_table_insert(cxl_firmware_claims, hb, ep);
    return true;
}

void cxl_firmware_release_hb(PCIDevice *ep)
{
    GHashTableIter it;
    gpointer hb, holder;

    if (!cxl_firmware_claims) {
        return;
    }
    g_hash_table_iter_init(&it, cxl_firmware_claims);
    while (g_hash_table_iter_next(&it, &hb, &holder)) {
        if (holder == ep) {
            g_hash_table_iter_remove(&it);
        }
    }
}

bool cxl_firmware_window_at(uint64_t base, uint64_t size,
                            CXLFirmwareWindow *out)
{
    g_autoptr(GSList) windows = cxl_fmws_get_all_sorted();
    GSList *it;

    for (it = windows; it; it = it->next) {
        CXLFixedWindow *fw = CXL_FMW(it->data);

        if (fw->base && base >= fw->base && size <= fw->size &&
            base - fw->base <= fw->size - size) {
            cxl_firmware_describe(fw, out);
            return true;
        }
    }
    return false;
}

/* A mapped device memory region -> the range it is mapped at. */
typedef struct CXLFirmwareRange {
    uint64_t base, size;
} CXLFirmwareRange;
static GHashTable *cxl_firmware_maps;

static const char *cxl_firmware_mr_owner(MemoryRegion *mr)
{
    Object *owner = memory_region_owner(mr);

    if (owner && object_dynamic_cast(owner, TYPE_DEVICE)) {
        return cxl_firmware_dev_name(DEVICE(owner));
    }
    return memory_region_name(mr);
}

bool cxl_firmware_claim_map(MemoryRegion *mr, uint64_t base, uint64_t size,
                            Error **errp)
{
    CXLFirmwareRange *r;
    GHashTableIter it;
    gpointer other, value;

    if (!cxl_firmware_maps) {
        cxl_firmware_maps = g_hash_table_new_full(NULL, NULL, NULL, g_free);
    }
    g_hash_table_iter_init(&it, cxl_firmware_maps);
    while (g_hash_table_iter_next(&it, &other, &value)) {
        r = value;
        if (other != mr && base < r->base + r->size &&
            r->base < base + size) {
            error_setg(errp, "0x%" PRIx64 "+0x%" PRIx64 " overlaps the "
                       "memory of %s at 0x%" PRIx64 "+0x%" PRIx64, base, size,
                       cxl_firmware_mr_owner(other), r->base, r->size);
            return false;
        }
    }
    r = g_new(CXLFirmwareRange, 1);
    r->base = base;
    r->size = size;
    g_hash_table_insert(cxl_firmware_maps, mr, r);
    return true;
}

void cxl_firmware_release_map(MemoryRegion *mr)
{
    if (cxl_firmware_maps) {
        g_hash_table_remove(cxl_firmware_maps, mr);
    }
}

/* Whether a window that targets only @hb holds [@base, @base + @size). */
static bool cxl_firmware_window_targets(uint64_t base, uint64_t size,
                                        PXBCXLDev *hb)
{
    g_autoptr(GSList) windows = cxl_fmws_get_all_sorted();
    GSList *it;

    for (it = windows; it; it = it->next) {
        CXLFixedWindow *fw = CXL_FMW(it->data);

        if (fw->num_targets == 1 && cxl_firmware_targets(fw, 0, hb) &&
            base >= fw->base && size <= fw->size &&
            base - fw->base <= fw->size - size) {
            return true;
        }
    }
    return false;
}

/*
 * Whether a committed decoder of @hb's HDM capability decodes all of
 * [@base, @base + @size) to @port alone.  An interleaving decoder does not
 * count: the endpoint's memory is mapped contiguously.
 */
static bool cxl_firmware_hb_routes(PXBCXLDev *hb, PCIEPort *port,
                                   uint64_t base, uint64_t size)
{
    const uint32_t *cm =
        hb->cxl_host_bridge->cxl_cstate.crb.cache_mem_registers;
    const int stride = (A_CXL_HDM_DECODER1_BASE_LO -
                        A_CXL_HDM_DECODER0_BASE_LO) / 4;
    int i;

    if (!ARRAY_FIELD_EX32(cm, CXL_HDM_DECODER_GLOBAL_CONTROL,
                          HDM_DECODER_ENABLE)) {
        return false;
    }
    for (i = 0; i < CXL_HDM_DECODER_COUNT; i++) {
        const uint32_t *d = cm + i * stride;
        uint32_t ctrl = d[R_CXL_HDM_DECODER0_CTRL];
        uint64_t dbase, dsize;

        if (!FIELD_EX32(ctrl, CXL_HDM_DECODER0_CTRL, COMMITTED) ||
            FIELD_EX32(ctrl, CXL_HDM_DECODER0_CTRL, IW) ||
            (d[R_CXL_HDM_DECODER0_TARGET_LIST_LO] & 0xff) != port->port) {
            continue;
        }
        dbase = (d[R_CXL_HDM_DECODER0_BASE_LO] & 0xf0000000) |
            (uint64_t)d[R_CXL_HDM_DECODER0_BASE_HI] << 32;
        dsize = (d[R_CXL_HDM_DECODER0_SIZE_LO] & 0xf0000000) |
            (uint64_t)d[R_CXL_HDM_DECODER0_SIZE_HI] << 32;
        if (base >= dbase && size <= dsize && base - dbase <= dsize - size) {
            return true;
        }
    }
    return false;
}

bool cxl_firmware_routes(PCIDevice *ep, uint64_t base, uint64_t size,
                         bool hdm_enabled, bool mem_enabled)
{
    PCIEPort *port;
    PXBCXLDev *hb;

    if (!hdm_enabled || !mem_enabled || !size ||
        !(pci_get_word(ep->config + PCI_COMMAND) & PCI_COMMAND_MEMORY)) {
        return false;
    }
    /* Outside D0 a function decodes no memory, HDM included. */
    if ((ep->cap_present & QEMU_PCI_CAP_PM) &&
        (pci_get_word(ep->config + ep->pm_cap + PCI_PM_CTRL) &
         PCI_PM_CTRL_STATE_MASK)) {
        return false;
    }
    hb = cxl_firmware_path(ep, &port, NULL);
    if (!hb) {
        return false;
    }
    if (hb->cxl_host_bridge->passthrough) {
        /* No HDM decoders: its windows go to its only root port. */
        return cxl_firmware_window_targets(base, size, hb);
    }
    return cxl_firmware_hb_routes(hb, port, base, size);
}

/* Who re-evaluates cxl_firmware_routes() when a decoder changes. */
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

bool cxl_firmware_commit_hb_decoder(PCIDevice *ep, uint64_t base,
                                    uint64_t size, uint8_t enc_granularity,
                                    Error **errp)
{
    uint32_t *cm, ctrl;
    PCIEPort *port;
    PXBCXLDev *hb;

    hb = cxl_firmware_path(ep, &port, errp);
    if (!hb) {
        return false;
    }
    if (!hb->hdm_for_passthrough || hb->cxl_host_bridge->passthrough) {
        error_setg(errp, "host bridge %s has no HDM decoders "
                   "(pxb-cxl,hdm_for_passthrough=on)", DEVICE(hb)->id);
        return false;
    }
    if ((base | size) & (256 * MiB - 1) || !size) {
        error_setg(errp, "HDM range 0x%" PRIx64 "+0x%" PRIx64
                   " is not 256 MiB aligned", base, size);
        return false;
    }
    if (!cxl_firmware_hb_decoder_fits(hb, port, base, size, errp)) {
        return false;
    }
    cm = hb->cxl_host_bridge->cxl_cstate.crb.cache_mem_registers;

    stl_le_p(cm + R_CXL_HDM_DECODER0_BASE_LO, base & 0xf0000000);
    stl_le_p(cm + R_CXL_HDM_DECODER0_BASE_HI, base >> 32);
    stl_le_p(cm + R_CXL_HDM_DECODER0_SIZE_LO, size & 0xf0000000);
    stl_le_p(cm + R_CXL_HDM_DECODER0_SIZE_HI, size >> 32);
    stl_le_p(cm + R_CXL_HDM_DECODER0_TARGET_LIST_LO, port->port);
    stl_le_p(cm + R_CXL_HDM_DECODER0_TARGET_LIST_HI, 0);
    ctrl = FIELD_DP32(0, CXL_HDM_DECODER0_CTRL, IG, enc_granularity);
    ctrl = FIELD_DP32(ctrl, CXL_HDM_DECODER0_CTRL, IW, 0);
    ctrl = FIELD_DP32(ctrl, CXL_HDM_DECODER0_CTRL, LOCK_ON_COMMIT, 1);
    ctrl = FIELD_DP32(ctrl, CXL_HDM_DECODER0_CTRL, COMMIT, 1);
    ctrl = FIELD_DP32(ctrl, CXL_HDM_DECODER0_CTRL, COMMITTED, 1);
    stl_le_p(cm + R_CXL_HDM_DECODER0_CTRL, ctrl);
    ARRAY_FIELD_DP32(cm, CXL_HDM_DECODER_GLOBAL_CONTROL,
                     HDM_DECODER_ENABLE, 1);
    return true;
}
