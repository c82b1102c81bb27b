// SPDX-License-Identifier: GPL-2.0-or-later

//! Methods of [`system::MemoryRegion`] the devices need and the pinned
//! `system` crate does not have yet (it only initializes I/O regions).

use std::ffi::CStr;

use qom::prelude::*;
use system::{bindings, MemoryRegion};

/// Changing, mapping and unmapping a [`MemoryRegion`]. Every method wants
/// the BQL, as the memory API does.
pub trait MemoryRegionExt {
    /// `memory_region_set_enabled`.
    fn set_enabled(&self, enabled: bool);
    /// `memory_region_size`.
    fn size(&self) -> u64;
    /// `memory_region_set_size`.
    fn set_size(&self, size: u64);
    /// `memory_region_set_alias_offset`.
    fn set_alias_offset(&self, offset: u64);
    /// `memory_region_add_subregion`: `sub` appears at `offset`.
    ///
    /// # Panics
    /// (QEMU asserts) if `sub` is already mapped somewhere.
    fn add_subregion(&self, offset: u64, sub: &MemoryRegion);
    /// `memory_region_add_subregion_overlap`: `sub` appears at `offset`
    /// with `priority`.
    ///
    /// # Panics
    /// (QEMU asserts) if `sub` is already mapped somewhere.
    fn add_subregion_overlap(&self, offset: u64, sub: &MemoryRegion, priority: i32);
    /// `memory_region_del_subregion`.
    ///
    /// # Panics
    /// (QEMU asserts) if `sub` is not a subregion of `self`.
    fn del_subregion(&self, sub: &MemoryRegion);
    /// `memory_region_init_alias`: `self` becomes an alias of `size` bytes
    /// of `orig` from `offset`, a child of `owner` named `name`.
    ///
    /// # Safety
    ///
    /// `self` is not initialized (zeroed storage, e.g. a field of a QOM
    /// object that nothing has initialized yet) and lives as long as
    /// `owner`; `orig` outlives `self`.
    unsafe fn init_alias<O: IsA<Object>>(
        &self,
        owner: &O,
        name: &CStr,
        orig: &MemoryRegion,
        offset: u64,
        size: u64,
    );
}

impl MemoryRegionExt for MemoryRegion {
    fn set_enabled(&self, enabled: bool) {
        assert!(bql::is_locked());
        // SAFETY: a MemoryRegion of this wrapper, under the BQL; the call
        // only flags the region and schedules a memory transaction.
        unsafe { bindings::memory_region_set_enabled(self.as_mut_ptr(), enabled) }
    }

    fn size(&self) -> u64 {
        // SAFETY: a MemoryRegion of this wrapper; reads its size.
        unsafe { bindings::memory_region_size(self.as_mut_ptr()) }
    }

    fn set_size(&self, size: u64) {
        assert!(bql::is_locked());
        // SAFETY: as for set_enabled.
        unsafe { bindings::memory_region_set_size(self.as_mut_ptr(), size) }
    }

    fn set_alias_offset(&self, offset: u64) {
        assert!(bql::is_locked());
        // SAFETY: as for set_enabled.
        unsafe { bindings::memory_region_set_alias_offset(self.as_mut_ptr(), offset) }
    }

    fn add_subregion(&self, offset: u64, sub: &MemoryRegion) {
        assert!(bql::is_locked());
        assert_owned(sub);
        // SAFETY: both are regions of this wrapper, under the BQL. `sub`
        // stays valid while it is mapped: QEMU references its owner when
        // the owners differ, and when they are the same `sub` lives as
        // long as the container; the devices remove their subregions in
        // exit, before their owner is finalized.
        unsafe {
            bindings::memory_region_add_subregion(self.as_mut_ptr(), offset, sub.as_mut_ptr());
        }
    }

    fn add_subregion_overlap(&self, offset: u64, sub: &MemoryRegion, priority: i32) {
        assert!(bql::is_locked());
        assert_owned(sub);
        // SAFETY: as for add_subregion.
        unsafe {
            bindings::memory_region_add_subregion_overlap(
                self.as_mut_ptr(),
                offset,
                sub.as_mut_ptr(),
                priority,
            );
        }
    }

    fn del_subregion(&self, sub: &MemoryRegion) {
        assert!(bql::is_locked());
        // SAFETY: as for add_subregion; QEMU asserts that `sub`
        // is a subregion of `self`.
        unsafe { bindings::memory_region_del_subregion(self.as_mut_ptr(), sub.as_mut_ptr()) }
    }

    unsafe fn init_alias<O: IsA<Object>>(
        &self,
        owner: &O,
        name: &CStr,
        orig: &MemoryRegion,
        offset: u64,
        size: u64,
    ) {
        assert!(bql::is_locked());
        // SAFETY: the caller's promises; `name` is copied.
        unsafe {
            bindings::memory_region_init_alias(
                self.as_mut_ptr(),
                owner.upcast::<Object>().as_mut_ptr().cast(),
                name.as_ptr(),
                orig.as_mut_ptr(),
                offset,
                size,
            );
        }
    }
}

/// The mapping's safety rests on `sub` having an owner that outlives the
/// mapping (see add_subregion): a region without one could be freed while
/// the container still maps it.
fn assert_owned(sub: &MemoryRegion) {
    // SAFETY: reads one field of an initialized region, under the BQL.
    let owner = unsafe { (*sub.as_ptr()).owner };
    assert!(!owner.is_null(), "a subregion without an owner");
}
