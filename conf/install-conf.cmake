# Runs at `cmake --install` time with CMAKE_INSTALL_PREFIX set to the install prefix.
#  - etc: /etc for the /usr prefix (as GNUInstallDirs does), else PREFIX/etc;
#  - an existing allgo-ssh.conf is never overwritten: operators' settings survive a reinstall;
#  - a real install (prefix /usr, no DESTDIR, as root) creates the dedicated system users
#    (share/allgo-ssh/create-users); any other install only says to run that script.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(etc_dir "/etc/allgo")
else()
  set(etc_dir "${prefix}/etc/allgo")
endif()
set(BINDIR "${prefix}/bin")
set(SBINDIR "${prefix}/sbin")
set(DOCDIR "${prefix}/share/doc/allgo-ssh")
set(share "${prefix}/share/allgo-ssh")

file(MAKE_DIRECTORY "${ALLGO_CONF_STAGING_DIR}/sshd_config.d")
file(READ "${ALLGO_CONF_SOURCE_DIR}/allgo-ssh.conf" example)
string(REPLACE "/usr/bin/allgo-shell" "${BINDIR}/allgo-shell" example "${example}")
file(WRITE "${ALLGO_CONF_STAGING_DIR}/allgo-ssh.conf" "${example}")
configure_file("${ALLGO_CONF_SOURCE_DIR}/allgo-sshd.service"
               "${ALLGO_CONF_STAGING_DIR}/allgo-sshd.service" @ONLY)
configure_file("${ALLGO_CONF_SOURCE_DIR}/allgo-sandbox-gateway.service"
               "${ALLGO_CONF_STAGING_DIR}/allgo-sandbox-gateway.service" @ONLY)
configure_file("${ALLGO_CONF_SOURCE_DIR}/sshd_config.d/allgo.conf"
               "${ALLGO_CONF_STAGING_DIR}/sshd_config.d/allgo.conf" @ONLY)

file(INSTALL "${ALLGO_CONF_STAGING_DIR}/allgo-ssh.conf" DESTINATION "${share}"
     RENAME allgo-ssh.conf.example)
file(INSTALL "${ALLGO_CONF_STAGING_DIR}/sshd_config.d/allgo.conf" DESTINATION "${share}/sshd_config.d")
file(INSTALL "${ALLGO_CONF_STAGING_DIR}/allgo-sshd.service" "${ALLGO_CONF_STAGING_DIR}/allgo-sandbox-gateway.service"
     DESTINATION "${prefix}/lib/systemd/system")
if(EXISTS "$ENV{DESTDIR}${etc_dir}/allgo-ssh.conf")
  message(STATUS "Kept existing: $ENV{DESTDIR}${etc_dir}/allgo-ssh.conf")
else()
  file(INSTALL "${ALLGO_CONF_STAGING_DIR}/allgo-ssh.conf" DESTINATION "${etc_dir}"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()

execute_process(COMMAND id -u OUTPUT_VARIABLE install_uid OUTPUT_STRIP_TRAILING_WHITESPACE)
if(prefix STREQUAL "/usr" AND "$ENV{DESTDIR}" STREQUAL "" AND install_uid STREQUAL "0")
  execute_process(COMMAND "${share}/create-users" RESULT_VARIABLE users_result)
  if(NOT users_result EQUAL 0)
    message(FATAL_ERROR "${share}/create-users failed: allgo-sshd needs its system users")
  endif()
else()
  message(STATUS "System users not created (not a root install into /usr): run "
                 "${share}/create-users as root on the target machine")
endif()
