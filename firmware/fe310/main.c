/*
 * Test firmware for Renode's SiFive FE310 (platforms/cpus/sifive-fe310.repl).
 * RV32IMAC in machine mode, console on UART0. Behaviour: see ../README.md and
 * ../common/console.h.
 *
 * All work happens in the trap handler (machine-mode traps do not nest); the main loop
 * only sleeps in WFI, because a firmware that polls a peripheral register while idle
 * runs many times slower than real time in Renode.
 */
#include <stdint.h>

#define BOARD "fe310"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define UART0_TXDATA REG(0x10013000)
#define UART0_RXDATA REG(0x10013004)
#define UART0_TXCTRL REG(0x10013008)
#define UART0_RXCTRL REG(0x1001300C)
#define UART0_IE     REG(0x10013010)
#define UART0_IP     REG(0x10013014)
#define UART0_DIV    REG(0x10013018)
#define TXDATA_FULL (1u << 31)
#define TXCTRL_TXEN (1u << 0)
#define RXCTRL_RXEN (1u << 0) /* RXCNT = 0: watermark pending while the RX FIFO is not empty */
#define IE_RXWM (1u << 1)
#define IP_RXWM (1u << 1)

#define PLIC_PRIORITY(src) REG(0x0C000000 + 4 * (src))
#define PLIC_ENABLE0       REG(0x0C002000) /* context 0 (hart 0 M-mode), sources 0-31 */
#define PLIC_THRESHOLD     REG(0x0C200000)
#define PLIC_CLAIM         REG(0x0C200004)
#define UART0_PLIC_SRC 3

#define CLINT_MTIMECMP_LO REG(0x02004000)
#define CLINT_MTIMECMP_HI REG(0x02004004)
#define CLINT_MTIME_LO    REG(0x0200BFF8)
#define CLINT_MTIME_HI    REG(0x0200BFFC)

/* mtime rate: "frequency: 62000000" of the clint in Renode's sifive-fe310.repl. */
#define MTIME_HZ 62000000u
#define TICK_PERIOD (MTIME_HZ / 10) /* 100 ms */

#define MSTATUS_MIE (1u << 3)
#define MIE_MTIE (1u << 7)
#define MIE_MEIE (1u << 11)
#define MCAUSE_MTI 0x80000007u
#define MCAUSE_MEI 0x8000000Bu

#define csr_read(csr) ({ uint32_t v_; __asm__ volatile("csrr %0, " #csr : "=r"(v_)); v_; })
#define csr_write(csr, v) __asm__ volatile("csrw " #csr ", %0" : : "r"(v))
#define csr_set(csr, v) __asm__ volatile("csrs " #csr ", %0" : : "r"(v))
#define csr_clear(csr, v) __asm__ volatile("csrc " #csr ", %0" : : "r"(v))

static uint64_t next_tick; /* mtime of the next tick: periods add up without drift */

static void uart_putc(char c)
{
    while (UART0_TXDATA & TXDATA_FULL) /* short: Renode's TX FIFO is never full */
        ;
    UART0_TXDATA = (uint8_t)c;
}

static uint64_t mtime(void)
{
    uint32_t hi, lo;

    do { /* re-read if the low word wrapped between the two reads */
        hi = CLINT_MTIME_HI;
        lo = CLINT_MTIME_LO;
    } while (hi != CLINT_MTIME_HI);
    return (uint64_t)hi << 32 | lo;
}

/* Writing mtimecmp clears the timer interrupt; the high word goes to all-ones first so
 * no intermediate value can fire. */
static void set_mtimecmp(uint64_t t)
{
    CLINT_MTIMECMP_HI = 0xFFFFFFFFu;
    CLINT_MTIMECMP_LO = (uint32_t)t;
    CLINT_MTIMECMP_HI = (uint32_t)(t >> 32);
}

static void ticker_start(void)
{
    next_tick = mtime() + TICK_PERIOD;
    set_mtimecmp(next_tick);
    csr_set(mie, MIE_MTIE);
}

static void ticker_stop(void)
{
    csr_clear(mie, MIE_MTIE);
    set_mtimecmp(UINT64_MAX);
}

#include "../common/console.h"

/* Direct-mode mtvec needs a 4-byte aligned handler; the attribute saves the registers
 * it uses and returns with mret. */
__attribute__((interrupt("machine"), aligned(4)))
static void trap_handler(void)
{
    uint32_t cause = csr_read(mcause);

    if (cause == MCAUSE_MTI) {
        next_tick += TICK_PERIOD;
        set_mtimecmp(next_tick);
        console_tick();
    } else if (cause == MCAUSE_MEI) {
        uint32_t src;
        while ((src = PLIC_CLAIM) != 0) {
            if (src == UART0_PLIC_SRC)
                while (UART0_IP & IP_RXWM) /* check first: reading an empty rxdata is logged */
                    console_rx((char)(UART0_RXDATA & 0xFF));
            PLIC_CLAIM = src; /* complete */
        }
    } else {
        for (;;) /* an exception: nothing sensible to do in a test firmware */
            __asm__ volatile("wfi");
    }
}

/* Linker script symbols. */
extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];

void fe310_main(void); /* global: jumped to from _start */
void fe310_main(void)
{
    for (uint32_t *src = __data_load, *dst = __data_start; dst < __data_end;)
        *dst++ = *src++;
    for (uint32_t *dst = __bss_start; dst < __bss_end;)
        *dst++ = 0;

    csr_write(mtvec, (uint32_t)trap_handler);
    set_mtimecmp(UINT64_MAX); /* no timer interrupt until "ticks on" */

    UART0_DIV = 138; /* 115200 baud from the 16 MHz clock of Renode's model */
    UART0_TXCTRL = TXCTRL_TXEN;
    UART0_RXCTRL = RXCTRL_RXEN;
    UART0_IE = IE_RXWM;

    PLIC_PRIORITY(UART0_PLIC_SRC) = 1; /* priority 0 would mean "never" */
    PLIC_THRESHOLD = 0;
    PLIC_ENABLE0 = 1u << UART0_PLIC_SRC;

    console_banner();

    csr_write(mie, MIE_MEIE);
    csr_set(mstatus, MSTATUS_MIE);
    for (;;)
        __asm__ volatile("wfi");
}

/* The ELF entry and the first byte of the image (0x20400000): set the stack, go to C. */
__attribute__((naked, section(".text.start")))
void _start(void)
{
    __asm__ volatile("la sp, __stack_top\n"
                     "j fe310_main");
}
