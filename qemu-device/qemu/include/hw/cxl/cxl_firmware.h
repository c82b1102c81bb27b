/*
 * CXL platform firmware duties for emulated CXL endpoints
 *
 * On real platforms, firmware programs and commits the HDM decoders of
 * devices whose memory must be usable before the OS binds a driver
 * (CXL r3.1 section 9.10; Type-2 accelerators rely on it).  The Rust
 * crate rust/hw/cxl/firmware does the same at reset for an emulated
 * endpoint below a CXL root port of a pxb-cxl host bridge, maps its
 * memory into the CXL Fixed Memory Window (CFMW) that decodes it, and
 * decides (crate cxl_regs, module firmware) which window fits, whether
 * the host bridge's decoders route a range, and which claims conflict.
 * These are the C helpers it reads the machine through.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef CXL_FIRMWARE_H
#define CXL_FIRMWARE_H

#include "hw/pci/pci_device.h"
#include "system/memory.h"

/* The host bridge above an endpoint, and the endpoint's root port. */
typedef struct CXLFirmwarePath {
    /* The pxb-cxl host bridge (identity only). */
    Object *hb;
    /* Its id, or NULL. */
    const char *hb_id;
    /* The root port's port number (what a target list names). */
    uint8_t port;
    /* pxb-cxl,hdm_for_passthrough=on. */
    bool hdm_for_passthrough;
    /* A host bridge with one root port and no HDM decoders. */
    bool passthrough;
    /*
     * The host bridge's HDM Decoder Capability Structure: little-endian
     * dwords in its cache-mem registers, at the offsets of CXL r3.1
     * 8.2.4.20, with @hdm_count decoders.  Valid as long as the host
     * bridge, which outlives the endpoint.
     */
    uint32_t *hdm;
    uint32_t hdm_count;
} CXLFirmwarePath;

/* A CXL Fixed Memory Window. */
typedef struct CXLFirmwareWindow {
    /* The window's MemoryRegion (a container for direct mappings). */
    MemoryRegion *mr;
    /* Host physical base and size of the window. */
    uint64_t base;
    uint64_t size;
    /* Number of host bridges the window interleaves across. */
    uint8_t ways;
    /* Encoded interleave granularity (CXL r3.1 8.2.4.20.9). */
    uint8_t enc_granularity;
    /* Position of the window in -M cxl-fmw.N. */
    int index;
    /* Whether one of its targets is the host bridge asked about. */
    bool targets_hb;
} CXLFirmwareWindow;

/**
 * cxl_firmware_path: the host bridge and root port above @ep
 * @ep: an endpoint, which must sit directly below a root port of a pxb-cxl
 *      host bridge
 * @out: filled in on success
 * @errp: error naming what is wrong with the topology
 */
bool cxl_firmware_path(PCIDevice *ep, CXLFirmwarePath *out, Error **errp);

/**
 * cxl_firmware_windows: the machine's windows, in cxl-fmw order
 * @hb: the host bridge for CXLFirmwareWindow.targets_hb, or NULL
 * @out: room for @max windows
 *
 * Returns the number of windows, which may be more than @max (then only
 * the first @max are filled in).
 */
size_t cxl_firmware_windows(Object *hb, CXLFirmwareWindow *out, size_t max);

typedef void (*CXLFirmwareRouteFn)(void *opaque);

/**
 * cxl_firmware_watch_routes: call @fn(@opaque) after every guest write to
 * the HDM decoder registers of a CXL component (host bridges included)
 */
void cxl_firmware_watch_routes(CXLFirmwareRouteFn fn, void *opaque);

/**
 * cxl_firmware_unwatch_routes: drop every watch of @opaque
 */
void cxl_firmware_unwatch_routes(void *opaque);

/**
 * cxl_firmware_routes_changed: a decoder of some component changed
 */
void cxl_firmware_routes_changed(void);

#endif
