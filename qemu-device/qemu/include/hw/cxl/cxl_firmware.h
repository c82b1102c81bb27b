/*
 * CXL platform firmware duties for emulated CXL endpoints
 *
 * On real platforms, firmware programs and commits the HDM decoders of
 * devices whose memory must be usable before the OS binds a driver
 * (CXL r3.1 section 9.10; Type-2 accelerators rely on it).  These helpers
 * let an emulated endpoint below a CXL root port of a pxb-cxl host bridge
 * do the same at reset, and locate the CXL Fixed Memory Window (CFMW) that
 * decodes an address range.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef CXL_FIRMWARE_H
#define CXL_FIRMWARE_H

#include "hw/pci/pci_device.h"
#include "system/memory.h"

/* A CXL Fixed Memory Window as seen by an endpoint. */
typedef struct CXLFirmwareWindow {
    /* The window's MemoryRegion (a container for direct mappings). */
    MemoryRegion *mr;
    /* Host physical base and size of the window. */
    uint64_t base;
    uint64_t size;
    /* Number of host bridges the window interleaves across. */
    uint8_t ways;
    /* Encoded interleave granularity (CXL r3.1 8.2.4.20.7). */
    uint8_t enc_granularity;
    /* Position of the window in -M cxl-fmw.N. */
    int index;
} CXLFirmwareWindow;

/**
 * cxl_firmware_find_window: the window firmware maps an endpoint into
 * @ep: an endpoint directly below a root port of a pxb-cxl host bridge
 * @size: bytes of device memory to map
 * @out: filled in on success
 * @errp: error why no window fits (topology, interleave, size)
 *
 * Returns the first window (in cxl-fmw order) that targets only @ep's host
 * bridge and holds at least @size bytes.  The host bridge must have HDM
 * decoders (pxb-cxl,hdm_for_passthrough=on), since Linux assembles a
 * region only when a committed host bridge decoder has exactly the
 * endpoint decoder's range.
 */
bool cxl_firmware_find_window(PCIDevice *ep, uint64_t size,
                              CXLFirmwareWindow *out, Error **errp);

/**
 * cxl_firmware_claim_hb: reserve @ep's host bridge decoder 0 for its pre-commit
 * @ep: an endpoint directly below a root port of a pxb-cxl host bridge
 * @base, @size: the range reset will commit (cxl_firmware_commit_hb_decoder)
 * @errp: error naming the endpoint that already holds it, or the range the
 *        decoder already decodes
 *
 * Firmware commits one device per host bridge (its decoder 0 names one
 * root port).  Claiming at realize makes a second device fail there, with
 * an error, instead of at reset, where a failure cannot be reported (and
 * at hot-plug would end the running VM).  A decoder left committed (the
 * guest's, or firmware's for a device since unplugged) is accepted only if
 * it already decodes exactly @base/@size to @ep's root port, as reset will
 * require.  Claiming twice for @ep is fine.
 */
bool cxl_firmware_claim_hb(PCIDevice *ep, uint64_t base, uint64_t size,
                           Error **errp);

/**
 * cxl_firmware_release_hb: drop @ep's claim (unrealize); no-op without one
 */
void cxl_firmware_release_hb(PCIDevice *ep);

/**
 * cxl_firmware_window_at: the window that contains [@base, @base + @size)
 *
 * Returns false if no window contains the whole range.
 */
bool cxl_firmware_window_at(uint64_t base, uint64_t size,
                            CXLFirmwareWindow *out);

/**
 * cxl_firmware_claim_map: reserve [@base, @base + @size) for mapping @mr
 * @mr: the region a device maps there (its owner names the device)
 * @errp: error naming the device whose mapping overlaps
 *
 * Two devices committed at overlapping addresses must not both be mapped
 * (which one the guest reached would depend on QEMU's memory map): the
 * second commit is refused.  One range per region; claiming again moves
 * it.
 */
bool cxl_firmware_claim_map(MemoryRegion *mr, uint64_t base, uint64_t size,
                            Error **errp);

/**
 * cxl_firmware_release_map: drop @mr's range; no-op without one
 */
void cxl_firmware_release_map(MemoryRegion *mr);

/**
 * cxl_firmware_commit_hb_decoder: commit HDM decoder 0 of @ep's host bridge
 * @ep: an endpoint directly below a root port of a pxb-cxl host bridge
 * @base, @size: the HPA range, 256 MiB aligned, inside a window
 * @enc_granularity: encoded interleave granularity (the window's)
 * @errp: error if the host bridge has no HDM decoders, or its decoder 0
 *        already decodes another range
 *
 * Programs base, size, and a one-way target list naming @ep's root port,
 * then sets Lock On Commit and Committed and enables HDM decoding, the way
 * firmware leaves the decoder for the OS.
 */
bool cxl_firmware_commit_hb_decoder(PCIDevice *ep, uint64_t base,
                                    uint64_t size, uint8_t enc_granularity,
                                    Error **errp);

/**
 * cxl_firmware_routes: whether the decode path routes a range to @ep
 * @ep: an endpoint directly below a root port of a pxb-cxl host bridge
 * @base, @size: the range @ep's committed HDM decoder decodes
 * @hdm_enabled: HDM Decoder Enable of @ep's HDM Decoder Capability
 * @mem_enabled: Mem_Enable of @ep's CXL Device DVSEC
 *
 * An endpoint maps its memory into the window only while all of these
 * hold: PCI Memory Space of @ep is on, @hdm_enabled, @mem_enabled, and
 * the host bridge has HDM decoding enabled and a committed,
 * non-interleaving decoder that covers the range and targets @ep's root
 * port (a passthrough host bridge, without HDM decoders, routes the
 * windows that target only it to its one root port).  Re-evaluate
 * whenever one of them may have changed; for the host bridge,
 * cxl_firmware_watch_routes() says when.
 */
bool cxl_firmware_routes(PCIDevice *ep, uint64_t base, uint64_t size,
                         bool hdm_enabled, bool mem_enabled);

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
