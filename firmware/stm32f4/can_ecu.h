/*
 * A small CAN ECU on CAN1 (bxCAN, RM0090 chapter 32), for tests of CAN buses (the `can_ecu`
 * build of the STM32F4 firmware; behaviour: ../README.md). Included by main.c after console.h.
 *
 * Classical frames with 11-bit identifiers only:
 *   - every 10 ms: id 0x100, 8 bytes, byte 0 a counter (0, 1, ... 255, 0, ...), the rest 0;
 *   - ids 0x200-0x2FF are printed ("can: rx <ID>#<DATA> fmi=2") and sent on as id + 0x100;
 *   - a UDS server (ISO 14229-1) on ISO-TP (ISO 15765-2, normal addressing): requests on
 *     0x7E0 (physical) and 0x7DF (functional, single frames only), responses on 0x7E8;
 *   - the console line "can send <ID>#<DATA>" sends that frame.
 *
 * Received frames are told apart by the filter that accepted them (FMI in CAN_RDT0R), not by
 * their identifier: the three filters sit in banks 0-2, each a 32-bit mask filter assigned to
 * FIFO0, so the bank number is the FMI (RM0090 numbers the filters of a FIFO bank by bank, one
 * number for a 32-bit mask filter). Renode 1.16.1's STMCAN always reports FMI 0 (it builds
 * CAN_RDT0R before it runs the filters); a hook of the driver corrects that.
 *
 * Everything runs in the CAN1 RX0 and SysTick (1 ms) handlers, at the same priority as the
 * console's, so console lines never interleave and no state needs locking. Transmission polls
 * for a free mailbox (bounded); no TX interrupt is used.
 */
#ifndef CAN_ECU_H
#define CAN_ECU_H

/* Names this build in its image (tools recognise it by this string). */
__attribute__((used)) static const char can_ecu_marker[] = "jumpstarter-renode-fw feature=can-ecu";

/* ---- bxCAN registers (CAN1) ------------------------------------------------------------ */

#define CAN1_BASE 0x40006400u
#define CAN_MCR   REG(CAN1_BASE + 0x000)
#define CAN_MSR   REG(CAN1_BASE + 0x004)
#define CAN_TSR   REG(CAN1_BASE + 0x008)
#define CAN_RF0R  REG(CAN1_BASE + 0x00C)
#define CAN_IER   REG(CAN1_BASE + 0x014)
#define CAN_BTR   REG(CAN1_BASE + 0x01C)
#define CAN_TIR(mb)  REG(CAN1_BASE + 0x180 + 0x10 * (mb))
#define CAN_TDTR(mb) REG(CAN1_BASE + 0x184 + 0x10 * (mb))
#define CAN_TDLR(mb) REG(CAN1_BASE + 0x188 + 0x10 * (mb))
#define CAN_TDHR(mb) REG(CAN1_BASE + 0x18C + 0x10 * (mb))
#define CAN_RI0R  REG(CAN1_BASE + 0x1B0)
#define CAN_RDT0R REG(CAN1_BASE + 0x1B4)
#define CAN_RL0R  REG(CAN1_BASE + 0x1B8)
#define CAN_RH0R  REG(CAN1_BASE + 0x1BC)
/* Filter registers: CAN1 owns them (CAN2 uses the banks from CAN2SB on, 14 after reset). */
#define CAN_FMR   REG(CAN1_BASE + 0x200)
#define CAN_FM1R  REG(CAN1_BASE + 0x204)
#define CAN_FS1R  REG(CAN1_BASE + 0x20C)
#define CAN_FFA1R REG(CAN1_BASE + 0x214)
#define CAN_FA1R  REG(CAN1_BASE + 0x21C)
#define CAN_FR1(bank) REG(CAN1_BASE + 0x240 + 8 * (bank))
#define CAN_FR2(bank) REG(CAN1_BASE + 0x244 + 8 * (bank))

#define MCR_INRQ  (1u << 0)
#define MCR_SLEEP (1u << 1)
#define MCR_TXFP  (1u << 2) /* transmit in request order, not by identifier */
#define MCR_ABOM  (1u << 6) /* leave bus-off by itself */
#define MSR_INAK  (1u << 0)
#define MSR_SLAK  (1u << 1)
#define TSR_TME0  (1u << 26)
#define TSR_TME1  (1u << 27)
#define TSR_TME2  (1u << 28)
#define RF0R_FMP0 (3u << 0)
#define RF0R_RFOM (1u << 5)
#define IER_FMPIE0 (1u << 1)
#define FMR_FINIT (1u << 0)
#define TIR_TXRQ  (1u << 0)
#define ID_STD_SHIFT 21        /* STID[10:0] in TIxR, RIxR and 32-bit filter registers */
#define ID_IDE    (1u << 2)   /* same bit in all three */
#define ID_RTR    (1u << 1)

#define APB1ENR_CAN1EN (1u << 25)
#define CAN1_RX0_IRQ 20

/* CAN1_RX on PD0, CAN1_TX on PD1 (AF9): free pins on the STM32F4DISCOVERY's header. */
#define GPIOD_AFRL REG(0x40020C20)
#define CAN_RX_PIN 0
#define CAN_TX_PIN 1
#define AF_CAN1    9u

/* 500 kbit/s. The firmware leaves the clocks at their reset state, so on silicon APB1 runs
 * at HSI, 16 MHz (Renode ignores the timing). Prescaler 2: tq = 125 ns, 16 tq a bit =
 * 1 (sync) + 13 (BS1) + 2 (BS2), sample point at 87.5 %, SJW 1 tq. Fields hold value - 1. */
#define BTR_BRP(n) ((uint32_t)((n) - 1) << 0)
#define BTR_TS1(n) ((uint32_t)((n) - 1) << 16)
#define BTR_TS2(n) ((uint32_t)((n) - 1) << 20)
#define BTR_SJW(n) ((uint32_t)((n) - 1) << 24)
#define CAN_BTR_500K (BTR_BRP(2) | BTR_TS1(13) | BTR_TS2(2) | BTR_SJW(1)) /* no LBKM, no SILM */

/* Bounded busy waits. ~20000 polls are a few ms at 16 MHz: INAK needs 11 recessive bits, a
 * mailbox frees up after one frame (<= ~0.3 ms at 500 kbit/s) unless the bus is broken. */
#define CAN_WAIT_POLLS 20000u

/* ---- the filters and what the firmware does with what they accept ------------------------ */

enum fmi {
    FMI_UDS_PHYSICAL = 0,   /* bank 0: exactly 0x7E0 */
    FMI_UDS_FUNCTIONAL = 1, /* bank 1: exactly 0x7DF */
    FMI_FORWARD = 2,        /* bank 2: 0x200-0x2FF */
};

#define ID_UDS_PHYSICAL   0x7E0u
#define ID_UDS_FUNCTIONAL 0x7DFu
#define ID_UDS_RESPONSE   0x7E8u
#define ID_FORWARD        0x200u
#define MASK_FORWARD      0x700u
#define FORWARD_OFFSET    0x100u /* 0x2xx goes out as 0x3xx */
#define ID_PERIODIC       0x100u
#define PERIODIC_MS       10u

/* ---- transmit ---------------------------------------------------------------------------- */

/* Queues a classical data frame with an 11-bit id in a free mailbox. Polls TME at most
 * `polls` times; returns 0 (frame dropped) if no mailbox freed up. With TXFP set, frames go
 * out in the order they were queued, so ISO-TP consecutive frames cannot overtake each other
 * (by identifier they tie, and then the lowest mailbox number would win). */
static int can_tx(uint32_t id, const uint8_t *data, uint32_t len, uint32_t polls)
{
    uint32_t tsr;
    for (uint32_t i = 0; !((tsr = CAN_TSR) & (TSR_TME0 | TSR_TME1 | TSR_TME2)); i++)
        if (i >= polls)
            return 0;
    uint32_t mb = (tsr & TSR_TME0) ? 0 : (tsr & TSR_TME1) ? 1 : 2;

    uint32_t low = 0, high = 0;
    for (uint32_t i = 0; i < len && i < 8; i++) {
        if (i < 4)
            low |= (uint32_t)data[i] << (8 * i);
        else
            high |= (uint32_t)data[i] << (8 * (i - 4));
    }
    CAN_TDTR(mb) = len; /* DLC; TGT (time stamp in the frame) off */
    CAN_TDLR(mb) = low;
    CAN_TDHR(mb) = high;
    CAN_TIR(mb) = (id << ID_STD_SHIFT) | TIR_TXRQ; /* IDE = 0, RTR = 0: standard data frame */
    return 1;
}

/* ---- hex output and input ------------------------------------------------------------------ */

static void put_hex_digit(uint32_t v)
{
    uart_putc("0123456789ABCDEF"[v & 0xF]);
}

static void put_hex_byte(uint32_t v)
{
    put_hex_digit(v >> 4);
    put_hex_digit(v);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* ---- ISO-TP (ISO 15765-2) transmit side of the UDS server -------------------------------- */

/* Response frames are always 8 bytes, the unused ones set to this (ISO 15765-2 padding). */
#define ISOTP_PAD 0xAAu
#define N_BS_MS   1000u /* how long to wait for a flow control before giving up (N_Bs) */
#define STMIN_MAX 0x7Fu /* ms; what reserved STmin values count as */

enum isotp_state { ISOTP_IDLE, ISOTP_WAIT_FC, ISOTP_SENDING };

static struct {
    enum isotp_state state;
    uint8_t msg[64];   /* the whole response; the largest is 62 F1 8C + a 32-byte build id */
    uint32_t len;      /* its length */
    uint32_t pos;      /* bytes sent so far */
    uint32_t seq;      /* sequence number of the next consecutive frame */
    uint32_t bs;       /* block size from the last flow control (0: no more flow controls) */
    uint32_t in_block; /* consecutive frames sent in this block */
    uint32_t stmin_ms; /* separation time from the last flow control */
    uint32_t timer_ms; /* WAIT_FC: N_Bs left; SENDING: ms until the next consecutive frame */
} isotp;

/* One response frame: `n` bytes (PCI first), padded to 8. */
static void isotp_frame(const uint8_t *bytes, uint32_t n)
{
    uint8_t frame[8];
    for (uint32_t i = 0; i < 8; i++)
        frame[i] = i < n ? bytes[i] : ISOTP_PAD;
    can_tx(ID_UDS_RESPONSE, frame, 8, CAN_WAIT_POLLS);
}

/* Sends consecutive frames until the message is out, a block is full (wait for the next flow
 * control) or STmin says to wait. Called with the FC's RX interrupt (`on_tick` 0) or from the
 * 1 ms SysTick (`on_tick` 1). STmin is counted in SysTicks: after a frame sent on a tick the
 * next goes out STmin ticks later, exactly STmin ms; after one sent between ticks (right after
 * the flow control) one tick more, since the first tick may come at once. */
static void isotp_send_consecutive(int on_tick)
{
    while (isotp.state == ISOTP_SENDING) {
        uint8_t cf[8];
        uint32_t n = isotp.len - isotp.pos;
        if (n > 7)
            n = 7;
        cf[0] = (uint8_t)(0x20 | (isotp.seq & 0xF)); /* SN counts 1, 2, ... 15, 0, 1, ... */
        for (uint32_t i = 0; i < n; i++)
            cf[1 + i] = isotp.msg[isotp.pos + i];
        isotp_frame(cf, 1 + n);
        isotp.pos += n;
        isotp.seq++;

        if (isotp.pos >= isotp.len) {
            isotp.state = ISOTP_IDLE;
        } else if (isotp.bs && ++isotp.in_block == isotp.bs) {
            isotp.state = ISOTP_WAIT_FC;
            isotp.timer_ms = N_BS_MS;
        } else if (isotp.stmin_ms) {
            isotp.timer_ms = isotp.stmin_ms + (on_tick ? 0 : 1);
            return;
        }
    }
}

/* Sends a UDS response: a single frame up to 7 bytes, else a first frame, and then the
 * consecutive frames as the tester's flow controls allow. Replaces a response still going. */
static void isotp_send(const uint8_t *msg, uint32_t len)
{
    uint8_t frame[8];

    if (len <= 7) {
        isotp.state = ISOTP_IDLE;
        frame[0] = (uint8_t)len;
        for (uint32_t i = 0; i < len; i++)
            frame[1 + i] = msg[i];
        isotp_frame(frame, 1 + len);
        return;
    }
    for (uint32_t i = 0; i < len; i++)
        isotp.msg[i] = msg[i];
    isotp.len = len;
    frame[0] = (uint8_t)(0x10 | (len >> 8)); /* FF_DL, 12 bits */
    frame[1] = (uint8_t)len;
    for (uint32_t i = 0; i < 6; i++)
        frame[2 + i] = msg[i];
    isotp.pos = 6;
    isotp.seq = 1;
    isotp.state = ISOTP_WAIT_FC;
    isotp.timer_ms = N_BS_MS;
    isotp_frame(frame, 8);
}

/* A flow control from the tester (on 0x7E0). Ignored unless a first frame or a full block
 * is waiting for one. */
static void isotp_flow_control(const uint8_t *data, uint32_t dlc)
{
    if (isotp.state != ISOTP_WAIT_FC || dlc < 3)
        return;
    switch (data[0] & 0xF) { /* flow status */
    case 0:                  /* ContinueToSend */
        isotp.bs = data[1];
        isotp.in_block = 0;
        if (data[2] <= 0x7F)
            isotp.stmin_ms = data[2];
        else if (data[2] >= 0xF1 && data[2] <= 0xF9)
            isotp.stmin_ms = 1; /* 100-900 us: the 1 ms tick is the finest wait here */
        else
            isotp.stmin_ms = STMIN_MAX; /* reserved: ISO 15765-2 says use the longest */
        isotp.state = ISOTP_SENDING;
        isotp_send_consecutive(0);
        break;
    case 1: /* Wait: another flow control will follow */
        isotp.timer_ms = N_BS_MS;
        break;
    default: /* Overflow, or an invalid flow status: abort the response */
        isotp.state = ISOTP_IDLE;
        break;
    }
}

static void isotp_ms(void)
{
    if (isotp.state == ISOTP_WAIT_FC) {
        if (--isotp.timer_ms == 0)
            isotp.state = ISOTP_IDLE; /* N_Bs timeout: give up */
    } else if (isotp.state == ISOTP_SENDING && isotp.timer_ms && --isotp.timer_ms == 0) {
        isotp_send_consecutive(1);
    }
}

/* ---- UDS (ISO 14229-1) -------------------------------------------------------------------- */

#define SID_SESSION_CONTROL 0x10u
#define SID_READ_DID        0x22u
#define SID_TESTER_PRESENT  0x3Eu
#define SID_NEGATIVE        0x7Fu
#define POSITIVE(sid)       ((sid) + 0x40u)
#define SUPPRESS_POS_RSP    0x80u /* suppressPosRspMsgIndicationBit of a sub-function */

#define NRC_SERVICE_NOT_SUPPORTED     0x11u
#define NRC_SUBFUNCTION_NOT_SUPPORTED 0x12u
#define NRC_BAD_LENGTH                0x13u
#define NRC_OUT_OF_RANGE              0x31u

#define DID_VIN      0xF190u
#define DID_BUILD_ID 0xF18Cu /* ECUSerialNumber: here the firmware's build id */

static const char vin[] = "JSRENODEVECU00001"; /* 17 characters */
static const char build_id[] = BUILD_ID;

static void uds_negative(uint8_t sid, uint8_t nrc)
{
    const uint8_t rsp[3] = {SID_NEGATIVE, sid, nrc};
    isotp_send(rsp, 3);
}

/* Sub-function services: length at least 2, then the sub-function, then the exact length
 * (the order of checks in ISO 14229-1's general server response behaviour). */
static int uds_subfunction_ok(const uint8_t *req, uint32_t len, int supported)
{
    if (len < 2 || (supported && len != 2)) {
        uds_negative(req[0], NRC_BAD_LENGTH);
        return 0;
    }
    if (!supported) {
        uds_negative(req[0], NRC_SUBFUNCTION_NOT_SUPPORTED);
        return 0;
    }
    return 1;
}

static void uds_session_control(const uint8_t *req, uint32_t len)
{
    uint8_t sub = len >= 2 ? req[1] & 0x7F : 0;
    if (!uds_subfunction_ok(req, len, sub == 0x01 || sub == 0x03))
        return;
    if (req[1] & SUPPRESS_POS_RSP)
        return;
    /* P2 server max 50 ms (0x0032, in 1 ms), P2* server max 5000 ms (0x01F4, in 10 ms). */
    const uint8_t rsp[6] = {POSITIVE(SID_SESSION_CONTROL), sub, 0x00, 0x32, 0x01, 0xF4};
    isotp_send(rsp, 6);
}

static void uds_tester_present(const uint8_t *req, uint32_t len)
{
    if (!uds_subfunction_ok(req, len, len >= 2 && (req[1] & 0x7F) == 0x00))
        return;
    if (req[1] & SUPPRESS_POS_RSP)
        return;
    const uint8_t rsp[2] = {POSITIVE(SID_TESTER_PRESENT), 0x00};
    isotp_send(rsp, 2);
}

static void uds_read_did(const uint8_t *req, uint32_t len)
{
    if (len != 3) { /* exactly one DID */
        uds_negative(SID_READ_DID, NRC_BAD_LENGTH);
        return;
    }
    uint32_t did = (uint32_t)req[1] << 8 | req[2];
    const char *value;
    if (did == DID_VIN)
        value = vin;
    else if (did == DID_BUILD_ID)
        value = build_id;
    else {
        uds_negative(SID_READ_DID, NRC_OUT_OF_RANGE);
        return;
    }
    uint8_t rsp[sizeof isotp.msg];
    uint32_t n = 0;
    rsp[n++] = POSITIVE(SID_READ_DID);
    rsp[n++] = req[1];
    rsp[n++] = req[2];
    while (*value && n < sizeof rsp)
        rsp[n++] = (uint8_t)*value++;
    isotp_send(rsp, n);
}

static void uds_request(const uint8_t *req, uint32_t len)
{
    switch (req[0]) {
    case SID_SESSION_CONTROL:
        uds_session_control(req, len);
        break;
    case SID_TESTER_PRESENT:
        uds_tester_present(req, len);
        break;
    case SID_READ_DID:
        uds_read_did(req, len);
        break;
    default:
        uds_negative(req[0], NRC_SERVICE_NOT_SUPPORTED);
        break;
    }
}

/* A frame for the UDS server. Only single frames carry requests: a first frame (a request
 * longer than 7 bytes) and consecutive frames are ignored, as are flow controls on the
 * functional id (flow control belongs to the physical channel). */
static void uds_frame(const uint8_t *data, uint32_t dlc, int functional)
{
    if (dlc == 0)
        return;
    switch (data[0] >> 4) { /* N_PCI type */
    case 0: {               /* SingleFrame: SF_DL 1-7 and within the frame */
        uint32_t sf_dl = data[0] & 0xF;
        if (sf_dl >= 1 && sf_dl <= 7 && sf_dl < dlc)
            uds_request(data + 1, sf_dl);
        break;
    }
    case 3: /* FlowControl */
        if (!functional)
            isotp_flow_control(data, dlc);
        break;
    default: /* FirstFrame, ConsecutiveFrame, reserved */
        break;
    }
}

/* ---- forwarding ------------------------------------------------------------------------- */

static void forward_frame(uint32_t id, const uint8_t *data, uint32_t dlc)
{
    put_str("can: rx ");
    put_hex_digit(id >> 8);
    put_hex_byte(id);
    uart_putc('#');
    for (uint32_t i = 0; i < dlc; i++)
        put_hex_byte(data[i]);
    put_str(" fmi=");
    put_uint(FMI_FORWARD);
    put_str("\r\n");
    can_tx(id + FORWARD_OFFSET, data, dlc, CAN_WAIT_POLLS);
}

/* ---- interrupts ------------------------------------------------------------------------- */

static void can1_rx0_handler(void)
{
    while (CAN_RF0R & RF0R_FMP0) {
        uint32_t rir = CAN_RI0R, rdtr = CAN_RDT0R, low = CAN_RL0R, high = CAN_RH0R;
        CAN_RF0R = RF0R_RFOM; /* release the output mailbox */
        for (uint32_t i = 0; (CAN_RF0R & RF0R_RFOM) && i < CAN_WAIT_POLLS; i++)
            ; /* silicon: FMP0 counts down only once the release is done */

        uint32_t id = (rir >> ID_STD_SHIFT) & 0x7FF;
        uint32_t dlc = rdtr & 0xF;
        uint32_t fmi = (rdtr >> 8) & 0xFF;
        if (dlc > 8) /* DLC 9-15 means 8 bytes on classical CAN */
            dlc = 8;
        uint8_t data[8];
        for (uint32_t i = 0; i < 8; i++)
            data[i] = (uint8_t)((i < 4 ? low >> (8 * i) : high >> (8 * (i - 4))) & 0xFF);

        switch (fmi) { /* which filter took it, never the id: see the top of this file */
        case FMI_UDS_PHYSICAL:
            uds_frame(data, dlc, 0);
            break;
        case FMI_UDS_FUNCTIONAL:
            uds_frame(data, dlc, 1);
            break;
        case FMI_FORWARD:
            forward_frame(id, data, dlc);
            break;
        default: /* no other filter exists */
            break;
        }
    }
}

static uint32_t periodic_ms_left = PERIODIC_MS;
static uint32_t periodic_counter;

/* Called every 1 ms by SysTick. */
static void can_ecu_ms(void)
{
    if (--periodic_ms_left == 0) {
        periodic_ms_left = PERIODIC_MS;
        uint8_t data[8] = {(uint8_t)periodic_counter++, 0, 0, 0, 0, 0, 0, 0};
        /* No waiting in a 1 ms interrupt: with no free mailbox (nobody acknowledges on the
         * bus) this period's frame is skipped; the counter still counts the period. */
        can_tx(ID_PERIODIC, data, 8, 0);
    }
    isotp_ms();
}

/* ---- console ------------------------------------------------------------------------------ */

/* "can send <ID>#<DATA>": ID 1-3 hex digits (at most 7FF), DATA 0-8 bytes as pairs of hex
 * digits, nothing else on the line. Other lines starting "can send" print "can: bad frame". */
static void can_send_on(const char *s, uint32_t n)
{
    static const char cmd[] = "can send";
    const uint32_t cmd_len = sizeof cmd - 1;
    if (n < cmd_len)
        return;
    for (uint32_t i = 0; i < cmd_len; i++)
        if (s[i] != cmd[i])
            return;
    if (n > cmd_len && s[cmd_len] != ' ')
        return; /* "can sender" is not the command */

    uint32_t i = cmd_len + 1, id = 0, digits = 0, len = 0;
    uint8_t data[8];
    int v;
    for (; i < n && (v = hex_value(s[i])) >= 0; i++, digits++)
        id = id << 4 | (uint32_t)v;
    if (digits < 1 || digits > 3 || id > 0x7FF || i >= n || s[i] != '#')
        goto bad;
    for (i++; i < n; i += 2) {
        int hi = hex_value(s[i]), lo = i + 1 < n ? hex_value(s[i + 1]) : -1;
        if (hi < 0 || lo < 0 || len == 8)
            goto bad;
        data[len++] = (uint8_t)(hi << 4 | lo);
    }
    can_tx(id, data, len, CAN_WAIT_POLLS);
    return;
bad:
    put_str("can: bad frame\r\n");
}

/* ---- init ------------------------------------------------------------------------------- */

static void wait_msr(uint32_t mask, uint32_t want)
{
    for (uint32_t i = 0; (CAN_MSR & mask) != want && i < CAN_WAIT_POLLS; i++)
        ;
}

static void can_ecu_init(void)
{
    (void)*(volatile const char *)can_ecu_marker; /* referenced: --gc-sections keeps it */

    RCC_APB1ENR |= APB1ENR_CAN1EN;
    (void)RCC_APB1ENR;
    /* GPIOD's clock is on already (the LED). PD0/PD1 to alternate function 9. */
    GPIOD_AFRL = (GPIOD_AFRL & ~(0xFu << (4 * CAN_RX_PIN) | 0xFu << (4 * CAN_TX_PIN))) |
                 AF_CAN1 << (4 * CAN_RX_PIN) | AF_CAN1 << (4 * CAN_TX_PIN);
    GPIOD_MODER = (GPIOD_MODER & ~(3u << (2 * CAN_RX_PIN) | 3u << (2 * CAN_TX_PIN))) |
                  2u << (2 * CAN_RX_PIN) | 2u << (2 * CAN_TX_PIN);

    /* Out of sleep (the reset state) into initialisation mode. */
    CAN_MCR = (CAN_MCR & ~MCR_SLEEP) | MCR_INRQ;
    wait_msr(MSR_INAK | MSR_SLAK, MSR_INAK);
    CAN_MCR |= MCR_TXFP | MCR_ABOM;
    CAN_BTR = CAN_BTR_500K; /* writable only in initialisation mode */

    /* Filters, in filter initialisation mode (FINIT). Banks 0-2: 32-bit scale (FS1R = 1),
     * identifier-mask mode (FM1R = 0), FIFO0 (FFA1R = 0). FR1 holds the identifier, FR2 the
     * mask; IDE and RTR are in the mask too, so only standard data frames match. */
    CAN_FMR |= FMR_FINIT;
    CAN_FA1R &= ~7u; /* a bank's registers can be written only while it is inactive */
    CAN_FM1R &= ~7u;
    CAN_FS1R |= 7u;
    CAN_FFA1R &= ~7u;
    const uint32_t exact = 0x7FFu << ID_STD_SHIFT | ID_IDE | ID_RTR;
    CAN_FR1(FMI_UDS_PHYSICAL) = ID_UDS_PHYSICAL << ID_STD_SHIFT;
    CAN_FR2(FMI_UDS_PHYSICAL) = exact;
    CAN_FR1(FMI_UDS_FUNCTIONAL) = ID_UDS_FUNCTIONAL << ID_STD_SHIFT;
    CAN_FR2(FMI_UDS_FUNCTIONAL) = exact;
    CAN_FR1(FMI_FORWARD) = ID_FORWARD << ID_STD_SHIFT;
    CAN_FR2(FMI_FORWARD) = MASK_FORWARD << ID_STD_SHIFT | ID_IDE | ID_RTR;
    CAN_FA1R |= 7u;
    CAN_FMR &= ~FMR_FINIT;

    CAN_IER = IER_FMPIE0;
    /* Normal mode: on silicon INAK clears after 11 recessive bits on the bus. */
    CAN_MCR &= ~MCR_INRQ;
    wait_msr(MSR_INAK, 0);

    NVIC_ISER(CAN1_RX0_IRQ / 32) = 1u << (CAN1_RX0_IRQ % 32);
}

#endif
