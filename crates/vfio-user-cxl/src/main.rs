// SPDX-License-Identifier: GPL-2.0-or-later
//! `vfio-user-cxl`: serve a software CXL Type-2 device over vfio-user.

fn main() -> std::process::ExitCode {
    vfio_user_cxl::cli::main()
}
