/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * cxl-type2-ref: the user-space interface of the reference guest CXL
 * Type-2 driver (docs/guest-driver.md).
 *
 * /dev/cxl-type2-refN maps the device's coherent memory (write-back) from
 * offset 0 up to the region size; CXL_T2REF_GET_INFO reports that size.
 */
#ifndef _UAPI_CXL_TYPE2_REF_H
#define _UAPI_CXL_TYPE2_REF_H

#include <linux/ioctl.h>
#include <linux/types.h>

/**
 * struct cxl_t2ref_info - what CXL_T2REF_GET_INFO returns
 * @size: bytes of device memory that can be mapped from offset 0
 * @flags: zero (reserved)
 */
struct cxl_t2ref_info {
	__u64 size;
	__u64 flags;
};

#define CXL_T2REF_IOC_MAGIC	0xCF
#define CXL_T2REF_GET_INFO	_IOR(CXL_T2REF_IOC_MAGIC, 0, struct cxl_t2ref_info)

#endif /* _UAPI_CXL_TYPE2_REF_H */
