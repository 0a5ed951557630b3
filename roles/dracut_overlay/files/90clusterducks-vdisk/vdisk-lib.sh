#!/bin/sh
# clusterducks-vdisk: functions shared by the hooks (sourced, never run).
#
# State under /run/clusterducks (kept across switch_root, no secrets):
#   vdisk.env      the boot record without its secrets, for the booted system
#   vdisk.status   state=attached|failed|degraded|disabled|unassigned, cause, message
#   timing         "phase uptime-seconds" lines, one per finished phase
#   lower/         the golden image root, read-only (the overlay's lower layer)
# Secrets live only in /run/clusterducks/secret (0700), removed after login.

# shellcheck disable=SC2034,SC2153 # the hooks use these; VDISK_* are set by eval
VDISK_RUN=/run/clusterducks
VDISK_SECRET="$VDISK_RUN/secret"
VDISK_STAGE="$VDISK_RUN/vdisk"
VDISK_LOWER="$VDISK_RUN/lower"
VDISK_CONF=/etc/clusterducks/vdisk.conf
VDISK_CA=/etc/clusterducks/vdisk-api-ca.crt
VDISK_SMBIOS_PREFIX=io.clusterducks.vdisk.
VDISK_DMI_ENTRIES=${VDISK_DMI_ENTRIES:-/sys/firmware/dmi/entries}

# Every key of the shell-form boot record this module understands, and the
# ones that must be there (docs/api.md).
VDISK_KEYS="VDISK_API_VERSION VDISK_DEVICE VDISK_NAME VDISK_INITIATOR_IQN VDISK_TARGET_IQN VDISK_TPG \
VDISK_PORTALS VDISK_LUN VDISK_WWN VDISK_READONLY VDISK_CHAP_USER VDISK_CHAP_PASS VDISK_CHAP_MUTUAL_USER \
VDISK_CHAP_MUTUAL_PASS VDISK_OVERLAY VDISK_OVERLAY_LOWER VDISK_OVERLAY_UPPER VDISK_OVERLAY_WORK \
VDISK_MOUNTS VDISK_FROZEN VDISK_REVISION"
VDISK_REQUIRED="VDISK_API_VERSION VDISK_DEVICE VDISK_INITIATOR_IQN VDISK_TARGET_IQN VDISK_PORTALS \
VDISK_LUN VDISK_WWN VDISK_OVERLAY VDISK_MOUNTS"
# Not written to vdisk.env.
VDISK_SECRET_KEYS="VDISK_CHAP_PASS VDISK_CHAP_MUTUAL_PASS"

vdisk_say() {
    # The console and the journal: what an admin reads when a boot stops.
    echo "clusterducks-vdisk: $*" > /dev/kmsg 2> /dev/null || :
    echo "clusterducks-vdisk: $*" >&2
}

vdisk_uptime() {
    read -r _up _ < /proc/uptime
    echo "$_up"
}

vdisk_mark() {
    mkdir -p "$VDISK_RUN"
    echo "$1 $(vdisk_uptime)" >> "$VDISK_RUN/timing"
}

vdisk_status() {
    # vdisk_status STATE [CAUSE [MESSAGE]]
    mkdir -p "$VDISK_RUN"
    {
        echo "state=$1"
        [ -n "$2" ] && echo "cause=$2"
        [ -n "$3" ] && echo "message=$3"
    } > "$VDISK_RUN/vdisk.status"
}

vdisk_forget_secrets() {
    rm -rf "$VDISK_SECRET"
    unset VDISK_TOKEN VDISK_CHAP_PASS VDISK_CHAP_MUTUAL_PASS
}

# vdisk_fail CAUSE MESSAGE: the failure policy. By default the boot stops with
# the cause on the console; rd.vdisk.onfail=continue boots the image without
# its vDisk, loudly (writes then land on the non-persistent root). Never a
# silent tmpfs upper.
vdisk_fail() {
    vdisk_forget_secrets
    if [ "$VDISK_ONFAIL" = continue ]; then
        # Nothing of the vDisk stays half-attached under the booted system.
        umount -R "$VDISK_STAGE" 2> /dev/null
        vdisk_status degraded "$1" "$2"
        vdisk_say "ERROR ($1): $2"
        vdisk_say "WARNING: booting WITHOUT the vDisk (rd.vdisk.onfail=continue): nothing written survives a reboot"
        return 1
    fi
    vdisk_status failed "$1" "$2"
    vdisk_say "FATAL ($1): $2"
    vdisk_say "the boot stops here; fix the cause, or boot with rd.vdisk.onfail=continue (no persistence) or rd.vdisk=0"
    if command -v die > /dev/null; then
        die "clusterducks-vdisk ($1): $2"
    fi
    exit 1
}

# -- configuration -----------------------------------------------------------

# Settings: the role's /etc/clusterducks/vdisk.conf in the initramfs, then the
# kernel command line (rd.vdisk.*), which wins.
vdisk_load_config() {
    VDISK_CONF_API_URLS=
    VDISK_CONF_TOKEN=auto
    VDISK_CONF_ONFAIL=halt
    VDISK_CONF_UNASSIGNED=halt
    VDISK_CONF_TIMEOUT=300
    VDISK_CONF_REPLACEMENT_TIMEOUT=600
    VDISK_CONF_NOOP_INTERVAL=0
    VDISK_CONF_NOOP_TIMEOUT=0
    # shellcheck disable=SC1090
    [ -r "$VDISK_CONF" ] && . "$VDISK_CONF"
    VDISK_API_URLS=$(getarg rd.vdisk.api=) || VDISK_API_URLS=$VDISK_CONF_API_URLS
    VDISK_API_URLS=$(echo "$VDISK_API_URLS" | tr ',' ' ')
    VDISK_TOKEN_SOURCE=$(getarg rd.vdisk.token=) || VDISK_TOKEN_SOURCE=$VDISK_CONF_TOKEN
    VDISK_ONFAIL=$(getarg rd.vdisk.onfail=) || VDISK_ONFAIL=$VDISK_CONF_ONFAIL
    VDISK_UNASSIGNED=$(getarg rd.vdisk.unassigned=) || VDISK_UNASSIGNED=$VDISK_CONF_UNASSIGNED
    VDISK_TIMEOUT=$(getarg rd.vdisk.timeout=) || VDISK_TIMEOUT=$VDISK_CONF_TIMEOUT
    VDISK_REPLACEMENT_TIMEOUT=$(getarg rd.vdisk.replacement_timeout=) \
        || VDISK_REPLACEMENT_TIMEOUT=$VDISK_CONF_REPLACEMENT_TIMEOUT
    VDISK_DEVICE_ARG=$(getarg rd.vdisk.device=) || VDISK_DEVICE_ARG=
}

# Checks the settings; prints the first problem and returns 1.
vdisk_check_config() {
    case "$VDISK_ONFAIL" in halt | continue) ;; *)
        echo "rd.vdisk.onfail must be halt or continue, not '$VDISK_ONFAIL'"
        return 1
        ;;
    esac
    case "$VDISK_UNASSIGNED" in halt | continue) ;; *)
        echo "rd.vdisk.unassigned must be halt or continue, not '$VDISK_UNASSIGNED'"
        return 1
        ;;
    esac
    vdisk_is_uint "$VDISK_TIMEOUT" 5 86400 || {
        echo "rd.vdisk.timeout must be 5..86400 seconds, not '$VDISK_TIMEOUT'"
        return 1
    }
    vdisk_is_uint "$VDISK_REPLACEMENT_TIMEOUT" 5 86400 || {
        echo "rd.vdisk.replacement_timeout must be 5..86400 seconds, not '$VDISK_REPLACEMENT_TIMEOUT'"
        return 1
    }
    [ -n "$VDISK_API_URLS" ] || {
        echo "no storage API URL: set rd.vdisk.api= or the role's dracut_overlay_api_urls"
        return 1
    }
    for _url in $VDISK_API_URLS; do
        vdisk_match "$_url" '^https://[][A-Za-z0-9.:-]+/?$' || {
            echo "storage API URL '$_url' is not https://HOST[:PORT]"
            return 1
        }
    done
    case "$VDISK_TOKEN_SOURCE" in auto | smbios | file:/* | cmdline:?*) ;; *)
        echo "rd.vdisk.token must be auto, smbios, file:/PATH or cmdline:TOKEN"
        return 1
        ;;
    esac
    return 0
}

# -- small checks ---------------------------------------------------------------

# vdisk_match VALUE ERE: the whole value matches, with no control character
# (a newline is one). Forks once: under emulation every fork costs.
vdisk_match() {
    case "$1" in *[[:cntrl:]]*) return 1 ;; esac
    printf '%s\n' "$1" | grep -qE "$2"
}

# vdisk_is_uint VALUE MIN MAX
vdisk_is_uint() {
    case "$1" in '' | *[!0-9]*) return 1 ;; esac
    [ "${#1}" -le 6 ] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]
}

# A relative path below a mount root or an absolute path: no empty, . or .. parts.
vdisk_safe_path() {
    vdisk_match "$1" '^/?[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$' || return 1
    case "/$1/" in */./* | */../*) return 1 ;; esac
    return 0
}

VDISK_IQN_ERE='^(iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[A-Za-z0-9._:-]+)?|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16}([0-9A-Fa-f]{16})?)$'
VDISK_DEVICE_ERE='^[a-z0-9][a-z0-9.-]{0,62}$'

# -- the device's identity and token --------------------------------------------

# The strings of SMBIOS type 11 (OEM strings) that start with our prefix, one
# per line without it. /sys/firmware/dmi/entries is root-only; qemu sets them
# with -smbios type=11,path=FILE and so can a BMC or hypervisor.
vdisk_smbios_strings() {
    for _raw in "$VDISK_DMI_ENTRIES"/11-*/raw; do
        [ -r "$_raw" ] || continue
        # Byte 1 is the length of the formatted area; the strings follow it.
        _len=$(od -An -tu1 -j1 -N1 "$_raw" | tr -d ' ')
        vdisk_is_uint "$_len" 4 255 || continue
        tail -c +"$((_len + 1))" "$_raw" | tr '\0' '\n'
    done | sed -n "s/^$(echo "$VDISK_SMBIOS_PREFIX" | sed 's/\./\\./g')//p"
}

vdisk_smbios_value() {
    vdisk_smbios_strings | sed -n "s/^$1=//p" | head -n 1
}

# The device id: rd.vdisk.device=, else the SMBIOS OEM string
# io.clusterducks.vdisk.device=, else the machine's SMBIOS system UUID.
vdisk_device_id() {
    if [ -n "$VDISK_DEVICE_ARG" ]; then
        echo "$VDISK_DEVICE_ARG"
        return
    fi
    _id=$(vdisk_smbios_value device)
    if [ -z "$_id" ] && [ -r /sys/class/dmi/id/product_uuid ]; then
        _id=$(tr 'A-F' 'a-f' < /sys/class/dmi/id/product_uuid)
        case "$_id" in 00000000-0000-0000-0000-000000000000 | ffffffff-ffff-ffff-ffff-ffffffffffff) _id= ;; esac
    fi
    echo "$_id"
}

# The device token from rd.vdisk.token: auto (SMBIOS, then the file
# /etc/clusterducks/device-token from an extra initramfs image), smbios,
# file:/PATH, or cmdline:TOKEN (readable in /proc/cmdline by every user).
vdisk_read_token() {
    case "$VDISK_TOKEN_SOURCE" in
        smbios) vdisk_smbios_value token ;;
        file:*) [ -r "${VDISK_TOKEN_SOURCE#file:}" ] && head -n 1 "${VDISK_TOKEN_SOURCE#file:}" ;;
        cmdline:*) echo "${VDISK_TOKEN_SOURCE#cmdline:}" ;;
        auto)
            _t=$(vdisk_smbios_value token)
            if [ -z "$_t" ] && [ -r /etc/clusterducks/device-token ]; then
                _t=$(head -n 1 /etc/clusterducks/device-token)
            fi
            echo "$_t"
            ;;
    esac
}

# -- the boot record -------------------------------------------------------------

# vdisk_parse_record FILE: reads the shell form line by line into VDISK_*
# variables without executing it. Prints the first problem and returns 1.
vdisk_parse_record() {
    for _k in $VDISK_KEYS; do unset "$_k"; done
    _known=" $VDISK_KEYS "
    _n=0
    while IFS= read -r _line || [ -n "$_line" ]; do
        _n=$((_n + 1))
        _key=${_line%%=*}
        _raw=${_line#*=}
        case "$_key" in
            VDISK_*[!A-Z0-9_]* | VDISK_ | *[[:cntrl:]]*) _key= ;;
            VDISK_*) [ "$_key" != "$_line" ] || _key= ;;
            *) _key= ;;
        esac
        if [ -z "$_key" ]; then
            echo "line $_n of the boot record is not KEY='value'"
            return 1
        fi
        case "$_raw" in "'"*"'") ;; *)
            echo "line $_n ($_key) of the boot record is not single-quoted"
            return 1
            ;;
        esac
        # Unquote: the only quote allowed inside is the escaped form '\''.
        _rest=${_raw#\'}
        _rest=${_rest%\'}
        _val=
        while :; do
            case "$_rest" in
                *"'\\''"*)
                    _piece=${_rest%%"'\\''"*}
                    _rest=${_rest#*"'\\''"}
                    _more=1
                    ;;
                *)
                    _piece=$_rest
                    _more=
                    ;;
            esac
            case "$_piece" in *"'"*)
                echo "line $_n ($_key) of the boot record has a stray quote"
                return 1
                ;;
            esac
            _val=$_val$_piece
            [ -n "$_more" ] || break
            _val="$_val'"
        done
        case "$_known" in
            *" $_key "*) eval "$_key=\$_val" ;;
            *) ;; # a newer API's key: ignored
        esac
    done < "$1"
    [ "$_n" -gt 0 ] || {
        echo "the boot record is empty"
        return 1
    }
    for _k in $VDISK_REQUIRED; do
        eval "_v=\${$_k+set}"
        [ "$_v" = set ] || {
            echo "the boot record has no $_k"
            return 1
        }
    done
    vdisk_check_record
}

vdisk_check_record() {
    [ "$VDISK_API_VERSION" = 1 ] || {
        echo "boot record version '$VDISK_API_VERSION' is not 1"
        return 1
    }
    [ "$VDISK_DEVICE" = "$VDISK_DEVICE_ID" ] || {
        echo "the boot record is for device '$VDISK_DEVICE', not '$VDISK_DEVICE_ID'"
        return 1
    }
    vdisk_match "$VDISK_INITIATOR_IQN" "$VDISK_IQN_ERE" || {
        echo "initiator IQN '$VDISK_INITIATOR_IQN' is not valid"
        return 1
    }
    vdisk_match "$VDISK_TARGET_IQN" "$VDISK_IQN_ERE" || {
        echo "target IQN '$VDISK_TARGET_IQN' is not valid"
        return 1
    }
    VDISK_TPG=${VDISK_TPG:-1}
    vdisk_is_uint "$VDISK_TPG" 1 65535 || {
        echo "TPG '$VDISK_TPG' is not 1..65535"
        return 1
    }
    vdisk_is_uint "$VDISK_LUN" 0 65535 || {
        echo "LUN '$VDISK_LUN' is not 0..65535"
        return 1
    }
    [ -n "$VDISK_PORTALS" ] || {
        echo "the boot record lists no portal"
        return 1
    }
    for _p in $VDISK_PORTALS; do
        vdisk_match "$_p" '^([0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$' || {
            echo "portal '$_p' is not IP:PORT or [IPv6]:PORT"
            return 1
        }
    done
    if ! vdisk_match "$VDISK_WWN" '^[0-9A-Fa-f-]{8,64}$' \
        || [ "$(printf '%s' "$VDISK_WWN" | tr -cd '0-9A-Fa-f' | wc -c)" -lt 25 ]; then
        echo "WWN '$VDISK_WWN' is not a LIO unit serial"
        return 1
    fi
    for _k in VDISK_READONLY VDISK_OVERLAY VDISK_FROZEN; do
        eval "_v=\${$_k:-0}"
        case "$_v" in 0 | 1) ;; *)
            echo "$_k must be 0 or 1, not '$_v'"
            return 1
            ;;
        esac
    done
    for _k in VDISK_CHAP_USER VDISK_CHAP_PASS VDISK_CHAP_MUTUAL_USER VDISK_CHAP_MUTUAL_PASS; do
        eval "_v=\${$_k}"
        case "$_v" in *[[:cntrl:]]*) _v=bad ;; esac
        if [ "$_v" = bad ] || [ "${#_v}" -gt 255 ]; then
            echo "$_k has control characters or is too long"
            return 1
        fi
    done
    if [ -n "$VDISK_CHAP_USER" ] && [ -z "$VDISK_CHAP_PASS" ]; then
        echo "CHAP user without a password"
        return 1
    fi
    [ -n "$VDISK_MOUNTS" ] || {
        echo "the boot record has no mounts"
        return 1
    }
    _seen=
    for _m in $VDISK_MOUNTS; do
        _part=${_m%%:*}
        _path=${_m#*:}
        if ! vdisk_is_uint "$_part" 0 128 || [ "$_part" = "$_m" ] || ! vdisk_safe_path "$_path" \
            || [ "${_path#/}" != "$_path" ]; then
            echo "mount '$_m' is not N:relative/path"
            return 1
        fi
        case " $_seen " in *" $_path "*)
            echo "mount path '$_path' is listed twice"
            return 1
            ;;
        esac
        _seen="$_seen $_path"
    done
    if [ "$VDISK_OVERLAY" = 1 ]; then
        [ "${VDISK_OVERLAY_LOWER:-/}" = / ] || {
            echo "overlay lower '$VDISK_OVERLAY_LOWER' is not supported: the lower is the image root, /"
            return 1
        }
        for _k in VDISK_OVERLAY_UPPER VDISK_OVERLAY_WORK; do
            eval "_v=\${$_k}"
            if ! vdisk_safe_path "$_v" || [ "${_v#/}" = "$_v" ]; then
                echo "$_k '$_v' is not an absolute path"
                return 1
            fi
            [ -n "$(vdisk_mount_of "$_v")" ] || {
                echo "$_k '$_v' is not below a vDisk mount"
                return 1
            }
        done
        case "$VDISK_OVERLAY_UPPER/" in "$VDISK_OVERLAY_WORK"/*)
            echo "upper is inside work"
            return 1
            ;;
        esac
        case "$VDISK_OVERLAY_WORK/" in "$VDISK_OVERLAY_UPPER"/*)
            echo "work is inside upper"
            return 1
            ;;
        esac
        [ "$(vdisk_mount_of "$VDISK_OVERLAY_UPPER")" = "$(vdisk_mount_of "$VDISK_OVERLAY_WORK")" ] || {
            echo "upper and work are on different vDisk filesystems"
            return 1
        }
    fi
    return 0
}

# vdisk_mount_of /ABS/PATH: the deepest mount path (relative) that holds it.
vdisk_mount_of() {
    _best=
    for _m in $VDISK_MOUNTS; do
        _p=${_m#*:}
        case "$1/" in "/$_p/"?*)
            [ "${#_p}" -gt "${#_best}" ] && _best=$_p
            ;;
        esac
    done
    echo "$_best"
}

# The record without its secrets, for the booted system (/run/clusterducks/vdisk.env).
vdisk_write_env() {
    mkdir -p "$VDISK_RUN"
    {
        for _k in $VDISK_KEYS; do
            case " $VDISK_SECRET_KEYS " in *" $_k "*) continue ;; esac
            eval "_v=\${$_k}"
            printf "%s='%s'\n" "$_k" "$(printf '%s' "$_v" | sed "s/'/'\\\\''/g")"
        done
        # Where the session went and which disk it gave.
        printf "VDISK_PORTAL='%s'\nVDISK_DISK='%s'\n" "$VDISK_PORTAL" "$VDISK_DISK"
    } > "$VDISK_RUN/vdisk.env.tmp"
    mv -f "$VDISK_RUN/vdisk.env.tmp" "$VDISK_RUN/vdisk.env"
}

# -- the disk ------------------------------------------------------------------------

# The kernel's name for a LIO disk: LIO builds its NAA 6 designator from the
# company id 001405 and the first 25 hex digits of the unit serial
# (spc_gen_naa_6h_vendor_specific), and udev links it as wwn-0x<32 hex digits>.
vdisk_naa_link() {
    _hex=$(printf '%s' "$1" | tr -cd '0-9A-Fa-f' | tr 'A-F' 'a-f' | cut -c1-25)
    echo "/dev/disk/by-id/wwn-0x6001405$_hex"
}

# vdisk_part_dev DISK N: the device of partition N (0 = the whole disk).
vdisk_part_dev() {
    if [ "$2" = 0 ]; then echo "$1"; else echo "$1-part$2"; fi
}
